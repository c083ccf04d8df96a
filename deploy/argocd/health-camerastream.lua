-- Argo CD health check for camstream.io/CameraStream.
--
-- Argo CD runs this (gopher-lua, Lua 5.1) with the live resource in `obj`
-- and shows the returned status on the CameraStream and its Application.
-- Install it as resource.customizations.health.camstream.io_CameraStream in
-- argocd-cm (docs/gitops.md). tests/deploy/test_argocd_health.py runs it
-- under real Lua interpreters against sample resources.
--
--   spec.enabled: false                     -> Suspended (paused on purpose)
--   no status / status not yet for the
--   latest spec (observedGeneration)        -> Progressing
--   a Degraded condition that is True       -> Degraded
--   phase Live                              -> Healthy
--   phase Pending, Connecting               -> Progressing
--   phase Reconnecting, Failed, Invalid     -> Degraded (no picture now)
--   phase Stopped                           -> Suspended
--   anything else                           -> Unknown
local hs = {}

local function describe(status, fallback)
  local text = fallback
  if status.reason ~= nil and status.reason ~= "" then
    text = status.reason
  end
  if status.message ~= nil and status.message ~= "" then
    text = text .. ": " .. status.message
  end
  return text
end

local spec = obj.spec or {}
local status = obj.status

if spec.enabled == false then
  hs.status = "Suspended"
  hs.message = "Stream paused (spec.enabled is false)"
  return hs
end

if status == nil or status.phase == nil or status.phase == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the stream's worker to pick it up"
  return hs
end

local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the worker to apply the latest spec"
  return hs
end

if status.conditions ~= nil then
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Degraded" and condition.status == "True" then
      hs.status = "Degraded"
      hs.message = describe(condition, "Degraded")
      return hs
    end
  end
end

local phase = status.phase
local where = ""
if status.worker ~= nil and status.worker ~= "" then
  where = " on " .. status.worker
end

if phase == "Live" then
  hs.status = "Healthy"
  hs.message = "Live" .. where
elseif phase == "Pending" or phase == "Connecting" then
  hs.status = "Progressing"
  hs.message = describe(status, phase) .. where
elseif phase == "Reconnecting" or phase == "Failed" or phase == "Invalid"
    or phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = describe(status, phase) .. where
elseif phase == "Stopped" then
  hs.status = "Suspended"
  hs.message = describe(status, "Stopped")
else
  hs.status = "Unknown"
  hs.message = "Unknown phase " .. tostring(phase)
end
return hs
