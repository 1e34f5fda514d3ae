// The review queue at the keyboard: j and k move between pictures, a and r accept or
// reject the chosen one, e puts the cursor in its label field. The decision is the
// item's own form, posted as without this script; the server answers with the queue
// and the position, so the next picture takes the decided one's place and is chosen.
(function () {
  "use strict";

  var list = document.querySelector(".review-queue");
  if (!list) return;
  var items = Array.prototype.slice.call(list.querySelectorAll(".review-item"));
  var at = Math.min(Number(list.dataset.at) || 0, items.length - 1);

  function choose(position) {
    at = Math.max(0, Math.min(position, items.length - 1));
    items.forEach(function (item, index) {
      var chosen = index === at;
      item.classList.toggle("is-selected", chosen);
      if (chosen) item.setAttribute("aria-current", "true");
      else item.removeAttribute("aria-current");
    });
    items[at].focus({ preventScroll: true });
    items[at].scrollIntoView({ block: "nearest" });
  }

  function typing(target) {
    return target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable);
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    var key = event.key;
    if (key === "j") choose(at + 1);
    else if (key === "k") choose(at - 1);
    else if (key === "a" || key === "r" || key === "e") {
      var control = items[at].querySelector('[data-key="' + key + '"]');
      if (!control) return;
      if (key === "e") control.focus();
      else control.click();
    } else return;
    event.preventDefault();
  });

  items.forEach(function (item, index) {
    item.addEventListener("click", function () { if (index !== at) choose(index); });
  });

  choose(at);
})();
