/*
 * camstream's player glue, loaded by the index page and the player pages
 * (worker/camstream_worker/pages.py) after hls.min.js.
 *
 * - Every <video data-src="...m3u8"> gets a player: hls.js where Media Source
 *   Extensions exist (desktop browsers, Android), else the browser's native
 *   HLS (Safari, iOS), else a visible message.
 * - If <body data-api> is set, the stream states shown on the page are
 *   refreshed from the worker's JSON API every data-refresh milliseconds.
 * - window.camstream.players exposes each player's state for tests and for
 *   people debugging in the console.
 * - A stream that asks viewers for a token gets it in the page's own URLs
 *   (the worker writes ?token= into data-src); a 401/403 answer is shown as
 *   such and not retried: a missing or expired token does not heal.
 */
(function () {
  "use strict";

  var players = [];
  window.camstream = { players: players };

  function showError(video, text) {
    var box = video.parentNode.querySelector(".player-error");
    if (box) {
      box.textContent = text;
      box.hidden = false;
    }
    video.title = text;
  }

  function attach(video) {
    var src = video.getAttribute("data-src");
    var state = { src: src, engine: "none", error: null, fatalErrors: 0, hls: null };
    players.push(state);

    if (window.Hls && window.Hls.isSupported()) {
      state.engine = "hls.js";
      var hls = new window.Hls({ liveDurationInfinity: true, lowLatencyMode: false });
      state.hls = hls;
      hls.on(window.Hls.Events.ERROR, function (event, data) {
        if (!data.fatal) {
          return;
        }
        state.fatalErrors += 1;
        state.error = data.type + ": " + data.details;
        var code = data.response && data.response.code;
        if (code === 401 || code === 403) {
          state.error = "not allowed (" + code + ")";
          showError(video, code === 401
            ? "Not allowed to watch: this link's token is missing or has expired."
            : "Not allowed to watch: this link's token is for another stream.");
          hls.destroy();
          return;
        }
        // A live stream that is reconnecting has no playlist for a while:
        // keep retrying network errors, recover media errors once in a while.
        if (data.type === window.Hls.ErrorTypes.NETWORK_ERROR) {
          window.setTimeout(function () { hls.startLoad(); }, 2000);
        } else if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR) {
          hls.recoverMediaError();
        } else {
          showError(video, "Playback failed: " + state.error);
        }
      });
      hls.loadSource(src);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      state.engine = "native";
      video.src = src;
    } else {
      state.error = window.Hls ? "no Media Source Extensions" : "hls.js not loaded";
      showError(video, "This browser cannot play HLS here (" + state.error + ").");
      return;
    }
    // Autoplay of muted video is allowed; if a browser still refuses, the
    // controls are there for a click.
    var started = video.play();
    if (started && started.catch) {
      started.catch(function () {});
    }
  }

  function setField(root, field, text) {
    var el = root.querySelector('[data-field="' + field + '"]');
    if (!el) {
      return;
    }
    el.textContent = text;
    if (field === "phase") {
      el.className = "phase phase-" + String(text).toLowerCase();
    }
  }

  function codecs(s) {
    var parts = [s.codecs.video, s.codecs.audio].filter(Boolean);
    var text = parts.length ? parts.join("+") : "-";
    return s.size ? text + " " + s.size.width + "x" + s.size.height : text;
  }

  function update(s) {
    var nodes = document.querySelectorAll('[data-key="' + s.key + '"]');
    for (var i = 0; i < nodes.length; i++) {
      setField(nodes[i], "phase", s.phase);
      setField(nodes[i], "reason", s.reason);
      setField(nodes[i], "message", s.message);
      setField(nodes[i], "codecs", codecs(s));
      setField(nodes[i], "age", s.segment_age === null ? "-" : s.segment_age.toFixed(1) + " s");
      setField(nodes[i], "reconnects", String(s.reconnects));
    }
  }

  function refresh(api, every) {
    fetch(api, { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (data) {
          (Array.isArray(data) ? data : [data]).forEach(update);
        }
      })
      .catch(function () {})
      .then(function () { window.setTimeout(function () { refresh(api, every); }, every); });
  }

  var videos = document.querySelectorAll("video[data-src]");
  for (var i = 0; i < videos.length; i++) {
    attach(videos[i]);
  }
  var api = document.body.getAttribute("data-api");
  if (api) {
    var every = parseInt(document.body.getAttribute("data-refresh"), 10) || 5000;
    window.setTimeout(function () { refresh(api, every); }, every);
  }
})();
