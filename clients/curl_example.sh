#!/usr/bin/env bash
# Stream a chat completion from the Tandem edge with curl (-N: print events as they come).
set -euo pipefail
BASE="${1:-http://127.0.0.1:8000}"
curl -sN "$BASE/v1/chat/completions" -H 'content-type: application/json' -d '{
  "model": "SmolLM2-135M-Instruct",
  "stream": true,
  "max_tokens": 100,
  "messages": [{"role": "user", "content": "Give me two fun facts about octopuses."}]
}'
echo
