-- wrk script: 16 requests per write, as TechEmpower's plaintext test pipelines.
init = function(args)
  local depth = tonumber(args[1]) or 16
  local batch = {}
  for i = 1, depth do
    batch[i] = wrk.format(nil)
  end
  req = table.concat(batch)
end

request = function()
  return req
end
