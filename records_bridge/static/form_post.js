// OAuth 2.0 Form Post Response Mode: send the answer on without a click. The
// page works without JavaScript too (its button does the same).
document.getElementById("form-post-response").submit();
