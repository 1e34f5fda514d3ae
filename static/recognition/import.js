// Import pages, enhanced. On the Import page: a folder or pictures dropped anywhere on
// the page go into the form's picture input (a dropped folder is walked for its files),
// one ZIP archive into its archive input, and the choice is summed up and checked as the
// server would (something chosen, not an archive and pictures, the size cap) before it is
// sent; the form itself posts as it does without this script. On an import's page: the
// progress, counts and each file's outcome follow the API's import resource, asked at
// least once a second until the import has ended, and Cancel asks the API. Without this
// script the job page refreshes itself and Cancel posts its form; the server renders the
// same markup (import_detail.html, import_item.html) from the same numbers.
(function () {
  "use strict";

  if (!window.fetch || !window.Promise || !window.DataTransfer) return;
  document.documentElement.classList.add("js");

  var POLL_MS = 500;  // after each answer; with the request's own time, well under 1 s
  var FINAL = ["done", "failed", "cancelled"];

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    // textContent, never innerHTML: filenames, labels and messages are untrusted.
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function plural(count, word) {
    return count + " " + word + (count === 1 ? "" : "s");
  }

  // --- The Import page -----------------------------------------------------------------

  function enhanceForm(form) {
    var inputs = Array.prototype.slice.call(form.querySelectorAll('input[type="file"]'));
    var picked = form.querySelector('input[name="files"]');
    var archive = form.querySelector('input[name="archive"]');
    var dropzone = document.getElementById("dropzone");
    var chosen = document.getElementById("import-chosen");
    var submit = document.getElementById("import-submit");
    var maxBytes = Number(form.dataset.maxBytes);

    function filesIn(input) {
      return Array.prototype.slice.call(input.files);
    }

    function chosenFiles() {
      return inputs.reduce(function (all, input) { return all.concat(filesIn(input)); }, []);
    }

    function isArchive(file) {
      return /\.zip$/i.test(file.name) || file.type === "application/zip";
    }

    // The server's own refusals, said before anything is sent.
    function problem(files) {
      if (!files.length) return form.dataset.nothingMessage;
      if (archive.files.length && files.length > archive.files.length) return form.dataset.mixedMessage;
      var bytes = files.reduce(function (sum, file) { return sum + file.size; }, 0);
      if (bytes > maxBytes) return form.dataset.tooLargeMessage;
      return null;
    }

    function summarise() {
      var files = chosenFiles();
      var refusal = files.length ? problem(files) : null;
      chosen.classList.toggle("error", !!refusal);
      if (refusal) chosen.textContent = refusal;
      else if (archive.files.length) chosen.textContent = archive.files[0].name + " chosen.";
      else chosen.textContent = files.length ? plural(files.length, "file") + " chosen." : "";
      submit.textContent = archive.files.length ? "Import the archive"
        : files.length ? "Import " + plural(files.length, "file") : "Start the import";
    }

    // A dropped folder is an entry to walk; readEntries gives at most 100 at a time.
    function filesOf(entry) {
      if (entry.isFile) {
        return new Promise(function (resolve) {
          entry.file(function (file) { resolve([file]); }, function () { resolve([]); });
        });
      }
      if (!entry.isDirectory) return Promise.resolve([]);
      var reader = entry.createReader();
      var found = [];
      return new Promise(function (resolve) {
        function more() {
          reader.readEntries(function (entries) {
            if (!entries.length) {
              Promise.all(found).then(function (lists) { resolve([].concat.apply([], lists)); });
              return;
            }
            entries.forEach(function (child) { found.push(filesOf(child)); });
            more();
          }, function () { resolve([]); });
        }
        more();
      });
    }

    function dropped(transfer) {
      // The entries must be taken while the drop event lasts; their files may come later.
      var entries = Array.prototype.map.call(transfer.items || [], function (item) {
        return item.webkitGetAsEntry ? item.webkitGetAsEntry() : null;
      });
      if (!entries.length || entries.some(function (entry) { return !entry; })) {
        return Promise.resolve(Array.prototype.slice.call(transfer.files));
      }
      return Promise.all(entries.map(filesOf)).then(function (lists) {
        return [].concat.apply([], lists);
      });
    }

    function add(files) {
      var all = new DataTransfer();
      if (files.length === 1 && isArchive(files[0])) {
        all.items.add(files[0]);  // one archive dropped is the import's archive
        archive.files = all.files;
      } else {
        filesIn(picked).concat(files).forEach(function (file) { all.items.add(file); });
        picked.files = all.files;
      }
      summarise();
    }

    inputs.forEach(function (input) { input.addEventListener("change", summarise); });

    window.onFilesDropped(dropzone, function (transfer) { dropped(transfer).then(add); });

    form.addEventListener("submit", function (event) {
      var files = chosenFiles();
      var refusal = problem(files);
      if (refusal) {
        // The server would refuse it too; this spares sending the files first.
        event.preventDefault();
        chosen.textContent = refusal;
        chosen.classList.add("error");
        return;
      }
      submit.disabled = true;
      submit.textContent = "Sending " + plural(files.length, "file") + "…";
    });
    summarise();
  }

  // --- An import's page ----------------------------------------------------------------

  function percentOf(job) {
    var processed = job.done + job.failed;
    // Floored like the server's: 100 % means every file is finished.
    return job.total ? Math.floor((100 * processed) / job.total) : 100;
  }

  function rateText(rate) {
    return rate === null ? "—" : rate.toFixed(1) + " pictures/s";
  }

  function timeLeftText(seconds) {
    if (seconds === null) return "—";
    if (seconds <= 0) return "none";
    if (seconds < 90) return "about " + Math.ceil(seconds) + " s";
    return "about " + Math.ceil(seconds / 60) + " min";
  }

  function score(value) {
    return (value * 100).toFixed(1) + "%";
  }

  function followJob(section) {
    var bar = document.getElementById("import-bar");
    var list = document.getElementById("import-items");
    var cancelForm = document.getElementById("import-cancel-form");
    var state = document.getElementById("import-state");
    var lastStatus = section.dataset.status;

    function text(id, value) {
      document.getElementById(id).textContent = value;
    }

    // One file's row, as import_item.html renders it.
    function itemView(item) {
      var row = el("li", "import-item import-item-" + item.status);
      row.dataset.position = item.position;
      row.appendChild(el("span", "import-item-name", item.filename));
      var outcome;
      if (item.status === "done" && item.classification_id !== null) {
        outcome = el("a", "import-item-outcome", item.label + " ");
        outcome.href = section.dataset.detailUrl.replace("/0/", "/" + item.classification_id + "/");
        outcome.appendChild(el("span", "top-score", score(item.score)));
      } else if (item.status === "done") {
        outcome = el("span", "import-item-outcome import-item-state", "Recognised, since deleted from your history.");
      } else if (item.status === "failed") {
        outcome = el("span", "import-item-outcome error", item.error ? item.error.message : "");
      } else if (item.status === "cancelled") {
        outcome = el("span", "import-item-outcome import-item-state", "Not imported: the import was cancelled.");
      } else {
        outcome = el("span", "import-item-outcome import-item-state", "Waiting…");
      }
      row.appendChild(outcome);
      return row;
    }

    function showItems(items) {
      var rows = {};
      Array.prototype.forEach.call(list.children, function (row) { rows[row.dataset.position] = row; });
      items.forEach(function (item) {
        var row = rows[item.position];
        // A row is rebuilt only when its file's status changed, so a link keeps its focus.
        if (row && row.classList.contains("import-item-" + item.status)) return;
        var view = itemView(item);
        if (row) list.replaceChild(view, row);
        else list.appendChild(view);
      });
    }

    function show(job) {
      var percent = percentOf(job);
      bar.setAttribute("aria-valuenow", percent);
      bar.setAttribute("aria-valuetext", percent + "%: " + (job.done + job.failed) + " of " + job.total + " files");
      document.getElementById("import-bar-fill").style.width = percent + "%";
      text("import-percent", percent + "%");
      text("import-done", job.done);
      text("import-total", job.total);
      text("import-failed", job.failed);
      text("import-rate", rateText(job.rate));
      text("import-time-left", timeLeftText(job.seconds_left));
      if (job.status !== lastStatus) {
        lastStatus = job.status;
        section.dataset.status = job.status;
        state.textContent = section.dataset["status" + job.status.charAt(0).toUpperCase() + job.status.slice(1)] +
          (job.error ? " " + job.error : "");
      }
      if (job.items) showItems(job.items);
      if (FINAL.indexOf(job.status) >= 0 && cancelForm && cancelForm.parentNode) {
        cancelForm.parentNode.removeChild(cancelForm);
      }
    }

    function poll() {
      fetch(section.dataset.apiUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (response.status >= 400 && response.status < 500) {
            // Logged out, or the import is gone: asking again will not change that.
            state.textContent = "This page stopped following the import (the server answered " +
              response.status + "). Reload the page to see where it is.";
            return null;
          }
          if (!response.ok) throw new Error("status " + response.status);
          return response.json();
        })
        .then(function (job) {
          if (!job) return;
          show(job);
          if (FINAL.indexOf(job.status) < 0) window.setTimeout(poll, POLL_MS);
        })
        .catch(function () {
          // A server restarting or a network blip: keep asking, a little slower.
          window.setTimeout(poll, POLL_MS * 2);
        });
    }

    if (cancelForm) {
      cancelForm.addEventListener("submit", function (event) {
        event.preventDefault();
        var button = cancelForm.querySelector("button");
        button.disabled = true;
        fetch(section.dataset.cancelUrl, {
          method: "POST",
          credentials: "same-origin",
          headers: {
            Accept: "application/json",
            "X-CSRFToken": cancelForm.querySelector('input[name="csrfmiddlewaretoken"]').value,
          },
        }).then(function (response) {
          if (!response.ok) throw new Error("status " + response.status);
          return response.json();
        }).then(show).catch(function () {
          cancelForm.submit();  // the plain form says what went wrong
        });
      });
    }

    if (FINAL.indexOf(lastStatus) < 0) poll();
  }

  var form = document.getElementById("import-form");
  if (form) enhanceForm(form);
  var section = document.getElementById("import-job");
  if (section) followJob(section);
})();
