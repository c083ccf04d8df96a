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
 * - A player page's <section data-recordings> (shown when the worker keeps
 *   recordings) draws the last day's recorded ranges as a timeline: a click
 *   plays the recording from there (a VOD playlist of the next hour), "Live"
 *   goes back, "Download clip" saves the minute around what is playing. A
 *   page opened with #t=<Unix seconds> starts in the recording at that
 *   moment. window.camstream.recordings has its state.
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

  var HOUR = 3600 * 1000;
  var TIMELINE = 24 * HOUR; // what the timeline shows
  var VOD_SPAN = HOUR; // how much a click loads
  var CLIP_HALF = 30 * 1000; // the clip button: the minute around the playing moment

  function iso(ms) {
    return new Date(ms).toISOString().replace(".000Z", "Z");
  }

  function recordings(section, video, player) {
    var base = section.getAttribute("data-recordings");
    var rec = {
      ranges: [], mode: "live", at: null, playing: null, from: 0, to: 0, clip: null,
      live: video.getAttribute("data-src"),
    };
    window.camstream.recordings = rec;
    var bars = section.querySelector(".timeline-ranges");
    var cursor = section.querySelector(".timeline-cursor");
    var clip = section.querySelector('[data-action="clip"]');

    function load() {
      var to = Date.now();
      var from = to - TIMELINE;
      return fetch(base + "ranges.json?from=" + from / 1000 + "&to=" + to / 1000, { cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data) {
            return;
          }
          section.hidden = false;
          rec.ranges = data.ranges;
          // A day at most, from a minute before the oldest recording in it.
          rec.from = data.ranges.length ? Math.max(from, data.ranges[0].start_ms - 60000) : from;
          rec.to = to;
          draw(data);
        })
        .catch(function () {});
    }

    function percent(ms) {
      return (100 * (ms - rec.from)) / (rec.to - rec.from) + "%";
    }

    function draw(data) {
      bars.textContent = "";
      data.ranges.forEach(function (r) {
        var bar = document.createElement("div");
        bar.style.left = percent(r.start_ms);
        bar.style.width = (100 * (r.end_ms - r.start_ms)) / (rec.to - rec.from) + "%";
        bar.title = r.start + " \u2013 " + r.end;
        bars.appendChild(bar);
      });
      setField(section, "recorded", data.recorded_seconds.toFixed(0) + " s in the last 24 h, " +
        data.gaps.length + " gaps");
      setField(section, "timeline-from", iso(rec.from));
      setField(section, "timeline-to", iso(rec.to));
    }

    function play(url) {
      if (player && player.hls) {
        player.hls.loadSource(url);
      } else {
        video.src = url;
      }
      var started = video.play();
      if (started && started.catch) {
        started.catch(function () {});
      }
    }

    function playAt(ms) {
      var end = Math.min(ms + VOD_SPAN, Date.now());
      rec.mode = "vod";
      rec.at = ms;
      play(base + "index.m3u8?from=" + ms / 1000 + "&to=" + end / 1000);
    }

    function tick() {
      var date = player && player.hls ? player.hls.playingDate : null;
      rec.playing = rec.mode === "vod" && date ? date.getTime() : null;
      var last = rec.ranges.length ? rec.ranges[rec.ranges.length - 1].end_ms : null;
      var middle = rec.playing !== null ? rec.playing : last !== null ? last - CLIP_HALF : null;
      if (middle === null) {
        clip.setAttribute("aria-disabled", "true");
      } else {
        rec.clip = base + "clip.mp4?from=" + (middle - CLIP_HALF) / 1000 + "&to=" + (middle + CLIP_HALF) / 1000;
        clip.href = rec.clip;
        clip.removeAttribute("aria-disabled");
      }
      if (rec.playing !== null && rec.to > rec.from) {
        cursor.hidden = false;
        cursor.style.left = percent(rec.playing);
        setField(section, "playing-at", "playing " + iso(rec.playing));
      } else {
        cursor.hidden = true;
        setField(section, "playing-at", rec.mode === "live" ? "live" : "");
      }
    }

    section.querySelector(".timeline").addEventListener("click", function (event) {
      var box = event.currentTarget.getBoundingClientRect();
      playAt(rec.from + ((event.clientX - box.left) / box.width) * (rec.to - rec.from));
    });
    section.querySelector('[data-action="live"]').addEventListener("click", function () {
      rec.mode = "live";
      rec.at = null;
      play(rec.live);
    });
    var wanted = /#t=([0-9.]+)/.exec(window.location.hash);
    load().then(function () {
      if (wanted) {
        playAt(parseFloat(wanted[1]) * 1000);
        return;
      }
      // A recorded stream's live playlist with its DVR window: the same live
      // edge, and minutes to rewind in the player's own controls.
      return fetch("dvr.m3u8", { method: "HEAD", cache: "no-store" }).then(function (r) {
        if (r.ok && rec.mode === "live") {
          rec.live = "dvr.m3u8";
          play(rec.live);
        }
      });
    });
    window.setInterval(tick, 1000);
    window.setInterval(load, 30000);
  }

  var videos = document.querySelectorAll("video[data-src]");
  for (var i = 0; i < videos.length; i++) {
    attach(videos[i]);
  }
  var section = document.querySelector("section[data-recordings]");
  if (section && videos.length) {
    recordings(section, videos[0], players[0]);
  }
  var api = document.body.getAttribute("data-api");
  if (api) {
    var every = parseInt(document.body.getAttribute("data-refresh"), 10) || 5000;
    window.setTimeout(function () { refresh(api, every); }, every);
  }
})();
