-- Argo CD health check for inferops.dev/InferenceModel.
-- Healthy when phase is Ready; Degraded when Failed; Progressing while the operator works
-- or has not yet seen the latest spec (status.observedGeneration behind metadata.generation).
local hs = {}

local function readyMessage(status)
  if status.conditions ~= nil then
    for _, condition in ipairs(status.conditions) do
      if condition.type == "Ready" and condition.message ~= nil and condition.message ~= "" then
        return condition.message
      end
    end
  end
  return nil
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the InferOps operator to reconcile the model"
  return hs
end

local status = obj.status
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local phase = status.phase
local message = readyMessage(status)
if phase == "Ready" then
  hs.status = "Healthy"
  hs.message = message or "Ready"
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = message or "Failed"
elseif phase == "Pending" or phase == "Optimizing" or phase == "Deploying" then
  hs.status = "Progressing"
  hs.message = message or phase
else
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to set a phase"
end
return hs
