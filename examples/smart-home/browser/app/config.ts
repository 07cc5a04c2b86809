/** What the server tells the page about the deployment (GET /config.json). */
export interface AppConfig {
  readonly keyServerUrl: string
  /** `wss://…/mqtt` */
  readonly brokerUrl: string
  /** The principal id the operator's token is bound to. */
  readonly appId: string
}
