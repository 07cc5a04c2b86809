// @peculiar/x509, always with the Reflect metadata API loaded first (its tsyringe needs it).
// Import X.509 from here, never from the package directly.
import 'reflect-metadata'

export * from '@peculiar/x509'
