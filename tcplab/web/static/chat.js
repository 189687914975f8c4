// tcplab chat page: one WebSocket text message per line, each way.
// Everything received is shown with textContent: nicks and messages are text, never HTML.
"use strict";

(function () {
  const log = document.getElementById("log");
  const status = document.getElementById("status");
  const join = document.getElementById("join");
  const say = document.getElementById("say");
  const line = document.getElementById("line");
  const room = document.getElementById("room");
  let socket = null;
  let pendingNick = null;
  let myNick = null; // as the server says: the local echo of our own lines uses it

  function show(text) {
    const item = document.createElement("li");
    if (text.startsWith("*** ")) item.className = "notice";
    else if (text.startsWith("*** error")) item.className = "error";
    const match = /^<([^>]+)> (.*)$/s.exec(text);
    if (match) {
      const nick = document.createElement("span");
      nick.className = "nick";
      nick.textContent = "<" + match[1] + ">";
      const body = document.createElement("span");
      body.className = "text";
      body.textContent = " " + match[2];
      item.append(nick, body);
    } else {
      item.textContent = text;
    }
    if (text.startsWith("*** error")) item.className = "error";
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(item);
    while (log.children.length > 1000) log.firstElementChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function connect(firstLine) {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(scheme + "//" + location.host + "/ws");
    status.textContent = "connecting…";
    socket.addEventListener("open", function () {
      status.textContent = "connected";
      socket.send(firstLine);
      join.hidden = true;
      room.hidden = false;
      line.focus();
    });
    socket.addEventListener("message", function (event) {
      const text = String(event.data);
      const welcome = /^\*\*\* Welcome to tcplab chat, (\S+)\./.exec(text);
      const renamed = /^\*\*\* (\S+) is now known as (\S+)$/.exec(text);
      if (welcome) myNick = welcome[1];
      else if (renamed && renamed[1] === myNick) myNick = renamed[2];
      show(text);
      if (pendingNick && /is a registered nickname/.test(text)) {
        document.getElementById("password-row").hidden = false;
      }
    });
    socket.addEventListener("close", function () {
      status.textContent = "disconnected (reload to rejoin)";
      say.querySelector("button").disabled = true;
    });
  }

  fetch("/api/info").then(function (r) { return r.json(); }).then(function (info) {
    if (info.auth) document.getElementById("password-row").hidden = false;
    status.textContent = "ready";
  }).catch(function () { status.textContent = "ready"; });

  join.addEventListener("submit", function (event) {
    event.preventDefault();
    const nick = document.getElementById("nick").value.trim();
    const password = document.getElementById("password").value;
    if (!nick) return;
    pendingNick = nick;
    connect("/nick " + nick + (password ? " " + password : ""));
    document.getElementById("password").value = "";
  });

  say.addEventListener("submit", function (event) {
    event.preventDefault();
    const text = line.value;
    if (!socket || socket.readyState !== WebSocket.OPEN || !text) return;
    socket.send(text);
    if (!text.startsWith("/")) show("<" + (myNick || pendingNick || "me") + "> " + text);
    line.value = "";
  });
})();
