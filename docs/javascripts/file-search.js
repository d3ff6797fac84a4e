// Search on a site opened from disk (file://): browsers refuse to start a Web Worker from a file page,
// and the theme runs its search index in one. On file pages this replaces Worker with an object that runs the
// worker's script in a hidden same-origin iframe, handing messages across by events. Elsewhere it does nothing.
(function () {
  "use strict";
  if (location.protocol !== "file:") {
    return;
  }

  function loadScript(frameWindow, url) {
    return new Promise(function (resolve, reject) {
      var script = frameWindow.document.createElement("script");
      script.src = new URL(url, frameWindow.__workerUrl).href;
      script.onload = resolve;
      script.onerror = function () { reject(new Error("cannot load " + url)); };
      frameWindow.document.head.appendChild(script);
    });
  }

  function FrameWorker(url) {
    var target = document.createDocumentFragment();  // an EventTarget for the "message" listeners
    var pending = [];
    var frameWindow = null;
    var self = this;
    this.addEventListener = target.addEventListener.bind(target);
    this.removeEventListener = target.removeEventListener.bind(target);
    this.dispatchEvent = target.dispatchEvent.bind(target);
    this.onmessage = null;

    function deliver(data) {
      frameWindow.dispatchEvent(new frameWindow.MessageEvent("message", { data: data }));
    }

    this.postMessage = function (data) {
      if (frameWindow === null || !frameWindow.__workerReady) {
        pending.push(data);
      } else {
        deliver(data);
      }
    };
    this.terminate = function () {
      if (frame.parentNode) {
        frame.parentNode.removeChild(frame);
      }
    };

    var frame = document.createElement("iframe");
    frame.hidden = true;
    frame.setAttribute("aria-hidden", "true");
    function start() {
      document.body.appendChild(frame);
      frameWindow = frame.contentWindow;
      frameWindow.__workerUrl = new URL(url, location.href).href;
      // What the worker's script sees as its global scope's postMessage and importScripts.
      frameWindow.postMessage = function (data) {
        var event = new MessageEvent("message", { data: data });
        if (typeof self.onmessage === "function") {
          self.onmessage(event);
        }
        target.dispatchEvent(event);
      };
      frameWindow.importScripts = function () {
        var urls = Array.prototype.slice.call(arguments);
        return urls.reduce(function (chain, next) {
          return chain.then(function () { return loadScript(frameWindow, next); });
        }, Promise.resolve());
      };
      loadScript(frameWindow, frameWindow.__workerUrl).then(function () {
        frameWindow.__workerReady = true;
        pending.splice(0).forEach(deliver);
      });
    }
    if (document.body) {
      start();
    } else {
      document.addEventListener("DOMContentLoaded", start);
    }
  }

  window.IFrameWorker = FrameWorker;  // the theme's search script looks for this name to find its language files
  window.Worker = FrameWorker;
})();
