// tcplab files page: browse, download, upload (resumable, with progress), delete.
// Names are shown with textContent, never as HTML.
"use strict";

(function () {
  const $ = function (id) { return document.getElementById(id); };
  let session = null;

  function encodePath(path) {
    return path.split("/").filter(Boolean).map(encodeURIComponent).join("/");
  }
  function currentDir() {
    return decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  }
  function join(dir, name) { return dir ? dir + "/" + name : name; }
  function setStatus(text) { $("status").textContent = text; }
  function formatSize(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }

  async function api(method, url, body) {
    const headers = { "X-Tcplab-Token": session ? session.token : "" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, {
      method: method, headers: headers, credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    let document_ = {};
    try { document_ = await response.json(); } catch (e) { document_ = { error: response.statusText }; }
    if (!response.ok) throw new Error(document_.error || response.statusText);
    return document_;
  }

  async function loadSession() {
    session = await api("GET", "/api/session");
    const loggedIn = Boolean(session.user);
    $("who").textContent = loggedIn ? "logged in as " + session.user : "";
    $("logout").hidden = !loggedIn;
    $("login").hidden = !session.auth || loggedIn;
    $("upload-area").hidden = !session.writable || (session.auth && !loggedIn);
  }

  function canChange() { return session.writable && (!session.auth || Boolean(session.user)); }

  function renderCrumbs(dir) {
    const nav = $("crumbs");
    nav.replaceChildren();
    const parts = dir ? dir.split("/") : [];
    const top = document.createElement("a");
    top.href = "#/";
    top.textContent = "/";
    nav.append(top);
    parts.forEach(function (part, i) {
      const link = document.createElement("a");
      link.href = "#/" + parts.slice(0, i + 1).map(encodeURIComponent).join("/");
      link.textContent = part + "/";
      nav.append(link);
    });
  }

  async function list() {
    const dir = currentDir();
    renderCrumbs(dir);
    const body = $("entries");
    if (session.auth && !session.anonymousReads && !session.user) {
      body.replaceChildren();
      setStatus("log in to see the files");
      return;
    }
    let listing;
    try {
      listing = await api("GET", "/api/list/" + encodePath(dir));
    } catch (e) {
      setStatus(e.message);
      body.replaceChildren();
      return;
    }
    const rows = listing.entries.map(function (entry) {
      const row = document.createElement("tr");
      const nameCell = document.createElement("td");
      const path = join(dir, entry.name);
      const link = document.createElement("a");
      if (entry.type === "dir") {
        link.href = "#/" + encodePath(path);
        link.textContent = entry.name + "/";
      } else if (entry.type === "file") {
        link.href = "/files/" + encodePath(path);
        link.setAttribute("download", entry.name);
        link.textContent = entry.name;
      }
      if (entry.type === "other") nameCell.textContent = entry.name;
      else nameCell.append(link);
      const size = document.createElement("td");
      size.className = "size";
      size.textContent = entry.type === "file" ? formatSize(entry.size) : "";
      const mtime = document.createElement("td");
      mtime.className = "mtime";
      mtime.textContent = new Date(entry.mtime * 1000).toLocaleString();
      const actions = document.createElement("td");
      actions.className = "actions";
      if (canChange()) {
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "danger";
        remove.textContent = "Delete";
        remove.setAttribute("aria-label", "Delete " + entry.name);
        remove.addEventListener("click", function () { removeEntry(path); });
        actions.append(remove);
      }
      row.append(nameCell, size, mtime, actions);
      return row;
    });
    body.replaceChildren.apply(body, rows);
    $("more").hidden = !listing.truncated;
  }

  async function removeEntry(path) {
    if (!window.confirm("Delete " + path + "? This cannot be undone.")) return;
    try {
      await api("DELETE", "/files/" + encodePath(path));
      setStatus("deleted " + path);
    } catch (e) {
      setStatus("cannot delete " + path + ": " + e.message);
    }
    list();
  }

  function put(url, blob, progress) {
    return new Promise(function (resolve) {
      const request = new XMLHttpRequest();
      request.open("PUT", url);
      request.setRequestHeader("X-Tcplab-Token", session.token);
      request.upload.addEventListener("progress", function (event) { progress(event.loaded); });
      request.addEventListener("load", function () {
        let answer = {};
        try { answer = JSON.parse(request.responseText); } catch (e) { answer = {}; }
        resolve({ status: request.status, answer: answer });
      });
      request.addEventListener("error", function () { resolve({ status: 0, answer: { error: "connection lost" } }); });
      request.send(blob);
    });
  }

  async function upload(file, dir) {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = file.name;
    const bar = document.createElement("progress");
    bar.max = file.size || 1;
    bar.value = 0;
    bar.setAttribute("aria-label", "Upload of " + file.name);
    const result = document.createElement("span");
    result.className = "sha";
    item.append(label, bar, result);
    $("uploads").append(item);
    const path = join(dir, file.name);
    const overwrite = $("overwrite").checked;
    const base = "/api/upload/" + encodePath(path) + "?size=" + file.size + (overwrite ? "&overwrite=1" : "");
    try {
      const probe = await api("GET", base);
      if (probe.exists && !overwrite) throw new Error("exists (tick “replace existing files”)");
      let offset = probe.offset;
      for (let attempt = 0; attempt < 3; attempt++) {
        if (offset) label.textContent = file.name + " (resuming at " + formatSize(offset) + ")";
        const start = offset;
        const sent = await put(base + "&offset=" + start, file.slice(start), function (loaded) { bar.value = start + loaded; });
        if (sent.status === 409 && typeof sent.answer.offset === "number") { offset = sent.answer.offset; continue; }
        if (sent.status !== 200) throw new Error(sent.answer.error || "failed (" + sent.status + ")");
        if (!sent.answer.done) { offset = sent.answer.offset; continue; }
        bar.value = bar.max;
        result.textContent = "done, SHA-256 " + sent.answer.sha256;
        item.dataset.sha256 = sent.answer.sha256;
        item.classList.add("done");
        return;
      }
      throw new Error("the upload did not complete");
    } catch (e) {
      result.textContent = "failed: " + e.message;
      item.classList.add("failed");
    }
  }

  async function uploadAll(files) {
    const dir = currentDir();
    for (const file of Array.from(files)) await upload(file, dir);
    list();
  }

  $("picker").addEventListener("change", function (event) {
    uploadAll(event.target.files).then(function () { event.target.value = ""; });
  });
  const drop = $("drop");
  drop.addEventListener("dragover", function (event) { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", function () { drop.classList.remove("over"); });
  drop.addEventListener("drop", function (event) {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer && event.dataTransfer.files.length) uploadAll(event.dataTransfer.files);
  });

  $("login").addEventListener("submit", async function (event) {
    event.preventDefault();
    try {
      const answer = await api("POST", "/api/login", { user: $("user").value, password: $("password").value });
      session.token = answer.token;
      $("password").value = "";
      await loadSession();
      list();
    } catch (e) {
      setStatus(e.message);
    }
  });
  $("logout").addEventListener("click", async function () {
    await api("POST", "/api/logout");
    await loadSession();
    list();
  });

  window.addEventListener("hashchange", function () { setStatus(""); list(); });
  loadSession().then(list).catch(function (e) { setStatus("cannot reach the server: " + e.message); });
})();
