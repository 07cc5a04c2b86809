// How a test reads an SmqttError: its code (or 'ok' when nothing was thrown), or the error
// itself for its message and details. Anything else thrown is rethrown: a test that expects a
// refusal must not pass on a crash.
import { isSmqttError, type SmqttError, type SmqttErrorCode } from '@smqtt/core'

/** The code of the SmqttError that `run` throws, or 'ok' when it returns; any other error is rethrown. */
export function codeOf(run: () => unknown): SmqttErrorCode | 'ok' {
  try {
    run()
    return 'ok'
  } catch (err) {
    if (isSmqttError(err)) return err.code
    throw err
  }
}

/** The SmqttError with `code` that `run` throws (to read its message or details); anything else fails. */
export function thrown(code: SmqttErrorCode, run: () => unknown): SmqttError {
  try {
    run()
  } catch (err) {
    if (isSmqttError(err, code)) return err
    throw err
  }
  throw new Error(`expected ${code}, nothing was thrown`)
}
