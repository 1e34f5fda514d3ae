// Upload page, enhanced: drag and drop, previews before sending, and each file sent on
// its own to the API so results (or errors) appear one by one. Without this script the
// form still posts every file to the page, which renders the same results.
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  if (!form || !window.fetch || !window.FormData || !window.URL) {
    return;
  }
  document.documentElement.classList.add("js");

  var input = form.querySelector('input[type="file"]');
  var dropzone = document.getElementById("dropzone");
  var previews = document.getElementById("previews");
  var results = document.getElementById("results");
  var heading = document.getElementById("results-heading");
  var csrfToken = form.querySelector('input[name="csrfmiddlewaretoken"]').value;
  var maxBytes = Number(form.dataset.maxBytes);
  var chosen = [];

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    // textContent, never innerHTML: filenames and labels are untrusted.
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function percent(score) {
    return (score * 100).toFixed(1) + "%";
  }

  // The page renders each URL for upload 0; this puts the real id in its place.
  function urlFor(template, id) {
    return template.replace("/0/", "/" + encodeURIComponent(id) + "/");
  }

  function choose(files) {
    chosen = Array.prototype.slice.call(files);
    previews.textContent = "";
    chosen.forEach(function (file) {
      var item = el("li");
      var img = el("img");
      img.src = URL.createObjectURL(file);
      img.alt = "Preview of " + file.name;
      item.appendChild(img);
      item.appendChild(el("span", "", file.name));
      previews.appendChild(item);
    });
  }

  function renderPredictions(predictions) {
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

  function renderSuccess(item, body, data) {
    // The server's thumbnail shows formats the browser cannot (TIFF).
    item.querySelector(".result-thumb").src = urlFor(form.dataset.thumbnailUrl, data.id);
    var name = el("p", "result-name", data.filename);
    if (data.duplicate) {
      name.appendChild(document.createTextNode(" "));
      name.appendChild(el("span", "badge", "Already uploaded"));
    }
    body.appendChild(name);
    var top = data.predictions[0];
    var topLine = el("p", "top-label", top.label + " ");
    topLine.appendChild(el("span", "top-score", percent(top.score)));
    body.appendChild(topLine);
    body.appendChild(renderPredictions(data.predictions));
    var link = el("a", "", "Details");
    link.href = urlFor(form.dataset.detailUrl, data.id);
    link.appendChild(el("span", "visually-hidden", " of " + data.filename));
    var linkLine = el("p");
    linkLine.appendChild(link);
    body.appendChild(linkLine);
  }

  function renderError(item, body, message) {
    item.classList.add("result-error");
    var error = el("p", "error", message);
    error.setAttribute("role", "alert");
    body.appendChild(error);
  }

  function send(file) {
    var item = el("li", "result result-pending");
    var thumb = el("img", "result-thumb");
    thumb.src = URL.createObjectURL(file);
    thumb.alt = "Thumbnail of " + file.name;
    item.appendChild(thumb);
    var body = el("div", "result-body");
    var pendingName = el("p", "result-name", file.name);
    body.appendChild(pendingName);
    item.appendChild(body);
    results.insertBefore(item, results.firstChild);
    heading.hidden = false;

    function done() {
      item.classList.remove("result-pending");
    }
    if (file.size > maxBytes) {
      done();
      renderError(item, body, "The file is too large: at most " + form.dataset.maxSize + " per image is accepted.");
      return Promise.resolve();
    }
    var data = new FormData();
    data.append("image", file, file.name);
    return fetch(form.dataset.apiUrl, {
      method: "POST",
      body: data,
      credentials: "same-origin",
      headers: { "X-CSRFToken": csrfToken, Accept: "application/json" },
    })
      .then(function (response) {
        return response.json().then(
          function (json) { return { ok: response.ok, status: response.status, json: json }; },
          function () { return { ok: false, status: response.status, json: null }; }
        );
      })
      .then(function (answer) {
        done();
        if (answer.ok) {
          body.removeChild(pendingName);
          renderSuccess(item, body, answer.json);
        } else if (answer.json && answer.json.error) {
          renderError(item, body, answer.json.error.message);
        } else {
          renderError(item, body, "The server answered with status " + answer.status + ". Please try again.");
        }
      })
      .catch(function () {
        done();
        renderError(item, body, "Could not reach the server. Check your connection and try again.");
      });
  }

  input.addEventListener("change", function () {
    choose(input.files);
  });

  ["dragenter", "dragover"].forEach(function (type) {
    dropzone.addEventListener(type, function (event) {
      event.preventDefault();
      dropzone.classList.add("is-dragging");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    dropzone.addEventListener(type, function (event) {
      event.preventDefault();
      dropzone.classList.remove("is-dragging");
    });
  });
  dropzone.addEventListener("drop", function (event) {
    if (event.dataTransfer && event.dataTransfer.files.length) {
      choose(event.dataTransfer.files);
    }
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!chosen.length && input.files.length) {
      chosen = Array.prototype.slice.call(input.files);  // restored by the browser
    }
    if (!chosen.length) {
      input.focus();
      return;
    }
    var files = chosen;
    chosen = [];
    previews.textContent = "";
    form.reset();
    // One at a time: the server classifies on CPU, and results arrive in order.
    files.reduce(function (previous, file) {
      return previous.then(function () { return send(file); });
    }, Promise.resolve());
  });
})();
