// `npm run bench`: every benchmark in this folder, one after the other.
// Each module exports `main()`, prints its own table and can also run alone
// (`node benchmark/<name>.mjs`).

const benchmarks = ['./pingpong.mjs', './in-heap.mjs', './channel.mjs']

for (const path of benchmarks) {
  const { main } = await import(path)
  await main()
}
