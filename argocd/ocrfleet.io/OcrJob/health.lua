-- Argo CD health of an ocrfleet.io OcrJob (a batch of documents read by an OcrCluster), from
-- the status.phase the ocrfleet operator writes:
--   Failed (too many failed documents, an empty or unreadable source) -> Degraded
--   Succeeded                                                         -> Healthy
--   Suspended (spec.suspend)                                          -> Suspended
--   Pending, Running                                                  -> Progressing, with the counts
-- A status written for an older generation of the spec (or none yet) is Progressing.
-- Only Lua's base library is used: a script from argocd-cm runs without string and math.
local hs = {}

local function text(value)
  if value == nil or value == "" then
    return nil
  end
  return tostring(value)
end

local function number(value)
  if type(value) == "number" then
    return value
  end
  return 0
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

-- "12 s", "4 min", "2 h 5 min" (the % operator needs no math library)
local function duration(seconds)
  if seconds < 120 then
    return seconds .. " s"
  end
  local minutes = (seconds - seconds % 60) / 60
  if minutes < 120 then
    return minutes .. " min"
  end
  return (minutes - minutes % 60) / 60 .. " h " .. minutes % 60 .. " min"
end

local function progress(status)
  local counts = status.counts or {}
  local message = number(counts.done) .. "/" .. number(counts.total) .. " documents done, " ..
    number(counts.failed) .. " failed, " .. number(counts.inFlight) .. " in flight"
  if type(status.etaSeconds) == "number" then
    message = message .. "; about " .. duration(status.etaSeconds) .. " to go"
  end
  return message
end

local function explain(status)
  local reason, message = text(status.reason), text(status.message)
  if reason ~= nil and message ~= nil then
    return reason .. ": " .. message
  end
  return message or reason
end

local waiting = not_observed(obj)
if waiting ~= nil then
  hs.status = "Progressing"
  hs.message = waiting
  return hs
end

local status = obj.status
local phase = status.phase
if phase == "Failed" then
  hs.status = "Degraded"
  hs.message = explain(status) or "the job failed"
elseif phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = text(status.message) or "every document read"
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = text(status.message) or "suspended (spec.suspend)"
elseif phase == "Running" then
  hs.status = "Progressing"
  hs.message = "Running: " .. progress(status)
elseif phase == "Pending" then
  hs.status = "Progressing"
  hs.message = "Pending, " .. (explain(status) or "waiting to start")
else
  hs.status = "Progressing"
  hs.message = "waiting for the ocrfleet operator to set the job's phase"
end
return hs
