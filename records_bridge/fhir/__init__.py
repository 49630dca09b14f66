"""The FHIR R4 read facade (spec section 7): ``resources`` maps items to JSON, ``routes`` serves it."""
