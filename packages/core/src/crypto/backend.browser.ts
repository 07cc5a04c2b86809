// Default backend outside Node: the portable one. No Node built-ins reach a browser bundle.
export { nobleBackend as defaultBackend } from './noble.js'
