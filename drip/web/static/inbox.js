// The mail catcher's inbox: new mail without reloading, and each email's frame as tall as the email.
// Everything works without this script but those two; it runs no code from the emails.
"use strict";

(function () {
  var EVERY = 2000;

  function follow(live) {
    var url = live.getAttribute("data-updates");
    var state = live.getAttribute("data-state");
    var busy = false;

    function refresh(fresh) {
      return fetch(window.location.href, {cache: "no-store", credentials: "same-origin"})
        .then(function (answer) { return answer.ok ? answer.text() : Promise.reject(answer.status); })
        .then(function (html) {
          var page = new DOMParser().parseFromString(html, "text/html");
          var next = page.getElementById("live");
          if (!next) return;
          var before = JSON.parse(state);
          live.innerHTML = next.innerHTML;
          var tabs = document.querySelector("nav.tabs"), newTabs = page.querySelector("nav.tabs");
          if (tabs && newTabs) tabs.innerHTML = newTabs.innerHTML;
          state = fresh;
          live.setAttribute("data-state", fresh);
          var now = JSON.parse(fresh);
          var said = [];
          var mail = now.messages - before.messages, replies = now.replies - before.replies;
          if (mail > 0) said.push(mail + " new message" + (mail === 1 ? "" : "s"));
          if (replies > 0) said.push(replies + " new repl" + (replies === 1 ? "y" : "ies"));
          var status = document.getElementById("arrived");
          if (status && said.length) status.textContent = said.join(", ") + " just arrived.";
        });
    }

    function ask() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(url, {cache: "no-store", credentials: "same-origin"})
        .then(function (answer) { return answer.ok ? answer.json() : Promise.reject(answer.status); })
        .then(function (now) {
          var fresh = JSON.stringify(now);
          if (fresh !== JSON.stringify(JSON.parse(state))) return refresh(fresh);
        })
        .catch(function () { /* the server may be restarting: ask again next time */ })
        .then(function () { busy = false; });
    }

    window.setInterval(ask, EVERY);
  }

  // The frame shares this page's origin (never its scripts), so its height can be read here.
  function fit(frame) {
    function size() {
      var doc;
      try { doc = frame.contentDocument; } catch (e) { return; }
      if (!doc || !doc.documentElement) return;
      frame.style.height = "0px";  // measured at no height: an email sized "100%" then shows its own
      var tall = Math.max(doc.documentElement.scrollHeight, doc.body ? doc.body.scrollHeight : 0);
      frame.style.height = (tall + 2) + "px";
    }
    frame.addEventListener("load", function () {
      size();
      window.setTimeout(size, 300);  // after late fonts and images
    });
    var waiting;
    window.addEventListener("resize", function () {
      window.clearTimeout(waiting);
      waiting = window.setTimeout(size, 100);
    });
    var doc = frame.contentDocument;  // loaded before this script ran: no load event to come
    if (doc && doc.readyState === "complete" && doc.URL !== "about:blank") size();
  }

  function start() {
    var live = document.getElementById("live");
    if (live) follow(live);
    var frames = document.querySelectorAll("iframe.email");
    for (var i = 0; i < frames.length; i++) fit(frames[i]);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
