// Errors as one line on stderr: `named-shm: <message> [<code>]`, or with
// --json one line `{"error": {"code", "message", "errno"?, "syscall"?}}`.

export function printError(error: unknown, json: boolean): void {
  const { code, message, errno, syscall } = error as { code?: unknown; message?: unknown; errno?: unknown; syscall?: unknown }
  const text = typeof message === 'string' ? message.split('\n')[0] : String(error)
  const shownCode = typeof code === 'string' ? code : 'ERR_UNEXPECTED'
  if (json) {
    const detail: Record<string, unknown> = { code: shownCode, message: text }
    if (typeof errno === 'number') detail.errno = errno
    if (typeof syscall === 'string') detail.syscall = syscall
    process.stderr.write(`${JSON.stringify({ error: detail })}\n`)
  } else {
    process.stderr.write(`named-shm: ${text} [${shownCode}]\n`)
  }
}
