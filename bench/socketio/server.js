// The Socket.io side of `roomcast bench --target socketio`: rooms and a
// `publish` event that emits to a room, with Socket.io's default settings and
// its built-in in-memory adapter (docs/performance.md has the commands).
//
//   PORT=3400 node server.js
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");
const { version } = require("socket.io/package.json");

const port = Number(process.env.PORT || 3400);
const host = process.env.HOST || "127.0.0.1";
const server = http.createServer();
const io = new Server(server);

io.on("connection", (socket) => {
  // `join` acknowledges, so the bench knows when the member is in the room.
  socket.on("join", (room, ack) => {
    socket.join(String(room));
    if (typeof ack === "function") ack("ok");
  });
  socket.on("publish", (room, data) => {
    io.to(String(room)).emit("event", data);
  });
});

server.listen(port, host, () => {
  console.log(`socket.io ${version} on ${host}:${port}, pid ${process.pid}`);
});
