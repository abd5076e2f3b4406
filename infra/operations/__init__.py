"""Operations on a deployment: deploy and its state, scale, verify, observe,
readiness, drills, bring-up measurements, and the clients they use."""
