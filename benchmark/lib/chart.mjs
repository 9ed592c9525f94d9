// docs/benchmark.svg: one panel per case, a bar per variant, each bar its
// median relative to the case's reference (1.0 = the reference).

const ROW = 18
const LABEL = 400
const BAR = 300
const WIDTH = LABEL + BAR + 110

function escape(text) {
  return String(text).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

function number(value) {
  if (value >= 100) return value.toFixed(0)
  if (value >= 10) return value.toFixed(1)
  return value.toPrecision(3)
}

export function chart(report) {
  const parts = []
  let y = 40
  const { machine } = report
  parts.push(
    `<text x="10" y="20" font-size="14" font-weight="bold">named-shm benchmarks${report.smoke ? ' (smoke run: numbers mean nothing)' : ''}</text>`,
    `<text x="10" y="34" font-size="10" fill="#555">${escape(`${machine.cpu}, ${machine.cpus} CPUs, load ${machine.loadAverage?.[0] ?? '?'}, ${machine.os}, node ${machine.node}; ${report.date.slice(0, 10)}; ${report.command}`)}</text>`,
  )
  for (const result of report.cases) {
    const rows = result.rows.filter((row) => !row.error && row.ratio !== undefined)
    y += 22
    parts.push(`<text x="10" y="${y}" font-size="12" font-weight="bold">${escape(`${result.title} — median ${result.unit}, bar: relative to the reference (${result.better} is better)`)}</text>`)
    y += 6
    const largest = Math.max(1, ...rows.map((row) => row.ratio))
    const scale = (ratio) => (Math.log10(1 + ratio) / Math.log10(1 + largest)) * BAR
    for (const row of rows) {
      y += ROW
      const width = Math.max(1, scale(row.ratio))
      const good = result.better === 'higher' ? row.ratio >= 1 : row.ratio <= 1
      const color = row.reference ? '#888' : good ? '#2a7' : '#c63'
      parts.push(
        `<text x="${LABEL - 6}" y="${y}" font-size="11" text-anchor="end">${escape(row.label)}</text>`,
        `<rect x="${LABEL}" y="${y - 11}" width="${width.toFixed(1)}" height="13" fill="${color}"/>`,
        `<text x="${LABEL + width + 4}" y="${y}" font-size="10">${escape(`${number(row.median)} ${result.unit} (${number(row.ratio)}x)`)}</text>`,
      )
    }
    const one = LABEL + scale(1)
    parts.push(`<line x1="${one}" y1="${y - rows.length * ROW - 2}" x2="${one}" y2="${y + 4}" stroke="#000" stroke-dasharray="2,2"/>`)
  }
  y += 20
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${y}" viewBox="0 0 ${WIDTH} ${y}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n')
}
