// The package entry: the compiled TypeScript facade (src/ → lib/).
module.exports = require('./lib/index.js')
