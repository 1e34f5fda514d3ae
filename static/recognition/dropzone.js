// Files dragged anywhere over a page land in its drop zone, never replace the page: the
// Upload and Import pages call onFilesDropped(dropzone, handle), and handle gets the
// drop's DataTransfer (its files, or a dropped folder's entries).
(function () {
  "use strict";

  function carriesFiles(event) {
    var types = event.dataTransfer && event.dataTransfer.types;
    return !!types && Array.prototype.indexOf.call(types, "Files") >= 0;
  }

  window.onFilesDropped = function (dropzone, handle) {
    ["dragenter", "dragover"].forEach(function (type) {
      document.addEventListener(type, function (event) {
        if (!carriesFiles(event)) return;
        event.preventDefault();
        event.dataTransfer.dropEffect = "copy";
        dropzone.classList.add("is-dragging");
      });
    });
    document.addEventListener("dragleave", function (event) {
      if (!event.relatedTarget) dropzone.classList.remove("is-dragging");
    });
    document.addEventListener("drop", function (event) {
      dropzone.classList.remove("is-dragging");
      if (!carriesFiles(event)) return;
      event.preventDefault();
      handle(event.dataTransfer);
    });
  };
})();
