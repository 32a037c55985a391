// Node's own http module, as its documentation writes a server.
const http = require("http");
const body = "Hello from Node.js.\n".repeat(27);
http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": Buffer.byteLength(body) });
  res.end(body);
}).listen(process.env.PORT, () => console.log(`dyno listening on ${process.env.PORT}`));
