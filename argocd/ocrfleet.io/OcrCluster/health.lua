-- Argo CD health of an ocrfleet.io OcrCluster (a pool of OCR workers, its API and its stores),
-- read from the status the ocrfleet operator writes:
--   Degraded=True (a pod that cannot run, the start-up deadline passed, a refused spec) -> Degraded
--   Ready=True (every worker, API pod and managed store ready; also scaled to zero)   -> Healthy
--   otherwise (creating, scaling, rolling out)                                        -> Progressing
-- A status written for an older generation of the spec (or none yet) is Progressing.
-- Only Lua's base library is used: a script from argocd-cm runs without string and math.
local hs = {}

local function condition(conditions, kind)
  for _, c in ipairs(conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function text(value)
  if value == nil or value == "" then
    return nil
  end
  return tostring(value)
end

-- why the status does not describe the current spec yet, or nil when it does
local function not_observed(object)
  local generation = object.metadata and object.metadata.generation
  local status = object.status
  local prefix = "the ocrfleet operator has not observed the latest spec yet"
  if type(status) ~= "table" or type(status.observedGeneration) ~= "number" then
    return prefix .. " (no status written)"
  end
  if type(generation) ~= "number" then
    return nil
  end
  if status.observedGeneration < generation then
    return prefix .. " (generation " .. generation .. ", status of generation " .. status.observedGeneration .. ")"
  end
  for _, c in ipairs(status.conditions or {}) do
    if type(c.observedGeneration) == "number" and c.observedGeneration < generation then
      return prefix .. " (generation " .. generation .. ", condition " .. tostring(c.type) ..
        " of generation " .. c.observedGeneration .. ")"
    end
  end
  return nil
end

local waiting = not_observed(obj)
if waiting ~= nil then
  hs.status = "Progressing"
  hs.message = waiting
  return hs
end

local conditions = obj.status.conditions or {}
local ready = condition(conditions, "Ready")
local degraded = condition(conditions, "Degraded")

if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  local reason, message = text(degraded.reason), text(degraded.message)
  if reason ~= nil and message ~= nil then
    hs.message = reason .. ": " .. message
  else
    hs.message = message or reason or "the pool is degraded"
  end
  return hs
end

if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = text(ready.message) or "ready"
  if ready.reason == "ScaledToZero" then
    hs.message = "scaled to zero while no work is queued: " .. hs.message
  end
  return hs
end

hs.status = "Progressing"
if ready ~= nil then
  hs.message = text(ready.message) or text(ready.reason) or "not ready yet"
else
  hs.message = "waiting for the ocrfleet operator to report the pool's readiness"
end
return hs
