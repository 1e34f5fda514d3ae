// Upload page, enhanced. Files come from the picker, a drop anywhere on the page or the
// clipboard; each is previewed and checked against the server's limits (rendered into
// the form's data attributes) before anything is sent. Each file then goes on its own to
// the API, its upload progress and then its result (or the server's message) shown in
// place. Without this script the form posts every file to the page, which renders the
// same results.
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  if (!form || !window.FormData || !window.URL || !window.XMLHttpRequest || !window.Promise) {
    return;
  }
  document.documentElement.classList.add("js");

  var input = form.querySelector('input[type="file"]');
  var dropzone = document.getElementById("dropzone");
  var previews = document.getElementById("previews");
  var status = document.getElementById("upload-status");
  var submit = document.getElementById("upload-submit");
  var results = document.getElementById("results");
  var heading = document.getElementById("results-heading");
  var csrfToken = form.querySelector('input[name="csrfmiddlewaretoken"]').value;
  var maxBytes = Number(form.dataset.maxBytes);
  var acceptedTypes = form.dataset.acceptTypes.split(",");
  var acceptedExtensions = form.dataset.acceptExtensions.split(",");
  // Two requests in flight: uploads overlap, while the server's CPU does one at a time.
  var PARALLEL_UPLOADS = 2;
  var chosen = [];  // {file, key, item, problem}

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    // textContent, never innerHTML: filenames and labels are untrusted.
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function announce(message) {
    status.textContent = message;
  }

  function plural(count, word) {
    return count + " " + word + (count === 1 ? "" : "s");
  }

  function percent(score) {
    return (score * 100).toFixed(1) + "%";
  }

  // The same units as the server's filesizeformat.
  function fileSize(bytes) {
    if (bytes < 1024) return plural(bytes, "byte");
    var units = ["KB", "MB", "GB"];
    var value = bytes / 1024;
    var unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return value.toFixed(1) + " " + units[unit];
  }

  // The page renders each URL for upload 0; this puts the real id in its place.
  function urlFor(template, id) {
    return template.replace("/0/", "/" + encodeURIComponent(id) + "/");
  }

  function extensionOf(name) {
    var dot = name.lastIndexOf(".");
    return dot < 0 ? "" : name.slice(dot).toLowerCase();
  }

  // The server has the last word (it reads the bytes); this spares a pointless upload.
  function problemWith(file) {
    if (file.size === 0) return "The file is empty.";
    if (file.size > maxBytes) return form.dataset.tooLargeMessage;
    if (acceptedTypes.indexOf(file.type) < 0 && acceptedExtensions.indexOf(extensionOf(file.name)) < 0) {
      return form.dataset.typeMessage;
    }
    return null;
  }

  // A preview from the file itself; formats the browser cannot show (TIFF) get a tile.
  function thumbnail(file, className, alt) {
    var img = el("img", className);
    var url = URL.createObjectURL(file);
    img.alt = alt;
    img.addEventListener("load", function () { URL.revokeObjectURL(url); });
    img.addEventListener("error", function () {
      URL.revokeObjectURL(url);
      var tile = el("span", className + " thumb-placeholder", extensionOf(file.name).slice(1).toUpperCase() || "?");
      tile.setAttribute("role", "img");
      tile.setAttribute("aria-label", alt);
      if (img.parentNode) img.parentNode.replaceChild(tile, img);
    });
    img.src = url;
    return img;
  }

  function refreshChoice() {
    var ready = chosen.filter(function (entry) { return !entry.problem; }).length;
    submit.textContent = ready ? "Recognise " + plural(ready, "image") : "Recognise";
  }

  function add(files) {
    var added = 0;
    var refused = 0;
    Array.prototype.forEach.call(files, function (file) {
      var key = [file.name, file.size, file.lastModified].join("/");
      if (chosen.some(function (entry) { return entry.key === key; })) return;
      var entry = { file: file, key: key, problem: problemWith(file) };
      var item = el("li", entry.problem ? "preview preview-rejected" : "preview");
      item.appendChild(thumbnail(file, "preview-thumb", "Preview of " + file.name));
      item.appendChild(el("span", "preview-name", file.name));
      item.appendChild(el("span", "preview-size", fileSize(file.size)));
      if (entry.problem) {
        item.appendChild(el("span", "error", entry.problem));
        refused += 1;
      } else {
        added += 1;
      }
      var remove = el("button", "link-button preview-remove", "Remove");
      remove.type = "button";
      remove.appendChild(el("span", "visually-hidden", " " + file.name));
      remove.addEventListener("click", function () {
        chosen.splice(chosen.indexOf(entry), 1);
        previews.removeChild(item);
        refreshChoice();
        announce("Removed " + file.name + ".");
        submit.focus();
      });
      item.appendChild(remove);
      entry.item = item;
      chosen.push(entry);
      previews.appendChild(item);
    });
    refreshChoice();
    var message = added ? plural(added, "image") + " ready to recognise." : "";
    if (refused) message += " " + plural(refused, "file") + " cannot be sent: see the reason under " + (refused === 1 ? "it." : "each.");
    if (message) announce(message.trim());
  }

  // One result row, built like the server's _result.html, updated as the file goes.
  function resultView(file) {
    var item = el("li", "result result-pending");
    item.appendChild(thumbnail(file, "result-thumb", "Thumbnail of " + file.name));
    var body = el("div", "result-body");
    var name = el("p", "result-name", file.name);
    var state = el("p", "result-state", "Waiting…");
    var progress = el("progress", "result-progress");
    progress.max = 1;
    progress.value = 0;
    progress.setAttribute("aria-label", "Upload of " + file.name);
    body.appendChild(name);
    body.appendChild(state);
    body.appendChild(progress);
    item.appendChild(body);

    function settle() {
      item.classList.remove("result-pending");
      body.removeChild(state);
      body.removeChild(progress);
    }

    return {
      item: item,
      uploading: function (fraction) {
        state.textContent = "Uploading… " + Math.round(fraction * 100) + "%";
        progress.value = fraction;
      },
      recognising: function () {
        state.textContent = "Recognising…";
        progress.removeAttribute("value");  // indeterminate: the server is working
      },
      succeeded: function (data) {
        settle();
        // The server's thumbnail also shows formats the browser cannot (TIFF).
        var thumb = el("img", "result-thumb");
        thumb.src = urlFor(form.dataset.thumbnailUrl, data.id);
        thumb.alt = "Thumbnail of " + data.filename;
        thumb.width = thumb.height = 96;
        item.replaceChild(thumb, item.firstChild);
        name.textContent = data.filename;
        if (data.duplicate) {
          name.appendChild(document.createTextNode(" "));
          name.appendChild(el("span", "badge", "Already uploaded"));
        }
        var top = data.predictions[0];
        var topLine = el("p", "top-label", top.label + " ");
        topLine.appendChild(el("span", "top-score", percent(top.score)));
        if (data.uncertain) {  // as _uncertain_badge.html renders it
          var badge = el("span", "badge badge-uncertain", "uncertain");
          badge.title = form.dataset.uncertainTitle;
          topLine.appendChild(document.createTextNode(" "));
          topLine.appendChild(badge);
        }
        body.appendChild(topLine);
        body.appendChild(predictionList(data.predictions));
        var link = el("a", "", "Details");
        link.href = urlFor(form.dataset.detailUrl, data.id);
        link.appendChild(el("span", "visually-hidden", " of " + data.filename));
        var linkLine = el("p");
        linkLine.appendChild(link);
        body.appendChild(linkLine);
      },
      failed: function (message) {
        settle();
        item.classList.add("result-error");
        var error = el("p", "error", message);
        error.setAttribute("role", "alert");
        body.appendChild(error);
      },
    };
  }

  function predictionList(predictions) {
    var list = el("ol", "predictions");
    predictions.forEach(function (prediction) {
      var item = el("li", "prediction");
      item.appendChild(el("span", "prediction-label", prediction.label));
      var bar = el("span", "bar");
      bar.setAttribute("aria-hidden", "true");
      var fill = el("span", "bar-fill");
      fill.style.width = Math.min(Math.max(prediction.score, 0), 1) * 100 + "%";
      bar.appendChild(fill);
      item.appendChild(bar);
      item.appendChild(el("span", "prediction-score", percent(prediction.score)));
      list.appendChild(item);
    });
    return list;
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (error) {
      return null;
    }
  }

  // XMLHttpRequest rather than fetch: only it reports upload progress.
  function send(file, view) {
    return new Promise(function (resolve) {
      var request = new XMLHttpRequest();
      var data = new FormData();
      data.append("image", file, file.name);
      request.open("POST", form.dataset.apiUrl);
      request.setRequestHeader("X-CSRFToken", csrfToken);
      request.setRequestHeader("Accept", "application/json");
      request.upload.addEventListener("progress", function (event) {
        if (event.lengthComputable) view.uploading(event.loaded / event.total);
      });
      request.upload.addEventListener("load", view.recognising);
      request.addEventListener("load", function () {
        var answer = parseJson(request.responseText);
        if (request.status >= 200 && request.status < 300 && answer && answer.predictions) {
          view.succeeded(answer);
        } else if (answer && answer.error && answer.error.message) {
          view.failed(answer.error.message);
        } else {
          view.failed("The server answered with status " + request.status + ". Please try again.");
        }
        resolve(request.status < 300);
      });
      request.addEventListener("error", function () {
        view.failed("Could not reach the server. Check your connection and try again.");
        resolve(false);
      });
      view.uploading(0);
      request.send(data);
    });
  }

  function runAll(jobs) {
    var next = 0;
    var outcomes = [];
    function worker() {
      if (next >= jobs.length) return Promise.resolve();
      var index = next++;
      return jobs[index]().then(function (ok) {
        outcomes[index] = ok;
        return worker();
      });
    }
    var workers = [];
    for (var i = 0; i < Math.min(PARALLEL_UPLOADS, jobs.length); i += 1) workers.push(worker());
    return Promise.all(workers).then(function () { return outcomes; });
  }

  input.addEventListener("change", function () {
    add(input.files);
    input.value = "";  // the same file may be chosen again after removing it
  });

  // Files dragged anywhere over the page land in the drop zone (dropzone.js).
  window.onFilesDropped(dropzone, function (transfer) { add(transfer.files); });

  document.addEventListener("paste", function (event) {
    var files = event.clipboardData ? event.clipboardData.files : [];
    if (!files || !files.length) return;  // pasted text goes where it was meant to
    event.preventDefault();
    add(files);
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var ready = chosen.filter(function (entry) { return !entry.problem; });
    if (!ready.length) {
      announce(chosen.length ? "None of the chosen files can be sent." : "Choose at least one image.");
      input.focus();
      return;
    }
    heading.hidden = false;
    // The newest batch goes on top, in the order its files were chosen.
    var anchor = results.firstChild;
    var jobs = ready.map(function (entry) {
      var view = resultView(entry.file);
      results.insertBefore(view.item, anchor);
      return function () { return send(entry.file, view); };
    });
    chosen = [];
    previews.textContent = "";
    refreshChoice();
    announce("Recognising " + plural(jobs.length, "image") + "…");
    runAll(jobs).then(function (outcomes) {
      var done = outcomes.filter(Boolean).length;
      var failed = outcomes.length - done;
      announce(plural(done, "image") + " recognised" + (failed ? ", " + failed + " refused." : "."));
    });
  });
})();
