// Fill the setup token from the URL fragment (#token=...): fragments never reach the server or its logs.
(function () {
  var match = /(?:^|[#&])token=([^&]+)/.exec(window.location.hash);
  var field = document.getElementById("setup-token");
  if (match && field && !field.value) {
    field.value = decodeURIComponent(match[1]);
    history.replaceState(null, "", window.location.pathname);
  }
})();
