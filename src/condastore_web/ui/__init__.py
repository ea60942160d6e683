"""The web UI: server-rendered pages over the service layer, a little JavaScript for actions."""
