"""The administrator's trust store: anchors and trust bundles per local domain and direction."""
