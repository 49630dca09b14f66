"""The app API over a record's items (spec section 1 and issue 10): list, read, add into the inbox, reconcile."""
