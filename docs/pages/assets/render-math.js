// Render the formulas pymdownx.arithmatex marks (class "arithmatex") with the KaTeX shipped in
// this folder: no CDN, nothing fetched at run time.  Material's instant navigation is off, so
// one pass at load is enough.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll(".arithmatex").forEach(function (el) {
    renderMathInElement(el, {
      delimiters: [
        { left: "\\(", right: "\\)", display: false },
        { left: "\\[", right: "\\]", display: true }
      ],
      throwOnError: false
    });
  });
});
