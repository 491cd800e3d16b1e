"""The running agent: SIP endpoint + one CallSession per call + call records + metrics,
and its HTTP routes (`/healthz`, `/metrics`, `/api/calls`). `trunkline serve` starts it;
`trunkline call` (agent/app/dialer.py) is its client over real SIP."""
