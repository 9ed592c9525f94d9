// Writing to stdout: JSON, lines, tables, and bytes with backpressure.

/** Prints `value` as one line of JSON. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`)
}

export function printLine(line: string): void {
  process.stdout.write(`${line}\n`)
}

/** Prints rows under a header, each column padded to its widest cell. */
export function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((cell, column) => Math.max(cell.length, ...rows.map((row) => row[column].length)))
  for (const row of [header, ...rows]) {
    printLine(row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]))).join('  '))
  }
}

/** Writes bytes to stdout, waiting while its buffer is full. */
export async function writeBytes(bytes: Uint8Array): Promise<void> {
  if (process.stdout.write(bytes)) return
  await new Promise<void>((resolve, reject) => {
    const cleanup = (): void => {
      process.stdout.off('drain', onDrain)
      process.stdout.off('error', onError)
    }
    const onDrain = (): void => {
      cleanup()
      resolve()
    }
    const onError = (error: Error): void => {
      cleanup()
      reject(error)
    }
    process.stdout.on('drain', onDrain)
    process.stdout.on('error', onError)
  })
}
