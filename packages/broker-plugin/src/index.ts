// @smqtt/broker-plugin is not built yet: see the project's issues. It exists so the workspace layout
// shows the architecture from the start; it exports nothing.
export {}
