// Node-RED loads node files with require(); the node is an ES module (this package is
// "type": "module"), so this CommonJS entry imports it. Node-RED waits for the returned promise.
module.exports = (RED) => import('./gtx-meter.js').then((m) => m.default(RED));
