#!/usr/bin/env bash
# Compares epoll-http (level-triggered, edge-triggered, --cork) with nginx
# running one worker, using wrk: 100 keep-alive connections, plain and
# pipelined 16 deep. Each configuration runs ROUNDS times, interleaved, and
# the table shows the median.
#
#   cargo build --release -p epoll-http
#   epoll-http/bench/run-wrk.sh            # needs wrk and nginx (apt-get install wrk nginx-light)
#
# Environment: ROUNDS (default 3), SECS (default 10), CONNS (default 100).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin="$root/target/release/epoll-http"
rounds=${ROUNDS:-3} secs=${SECS:-10} conns=${CONNS:-100}
[ -x "$bin" ] || { echo "build first: cargo build --release -p epoll-http" >&2; exit 1; }
command -v wrk >/dev/null || { echo "needs wrk" >&2; exit 1; }
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx_bin" ] || { echo "needs nginx" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Start each server once; wrk runs against them in turn.
declare -A url
start_epoll() {  # name, flags...
  local name=$1; shift
  "$bin" --addr 127.0.0.1:0 "$@" > "$work/$name.addr" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 50); do grep -q listening "$work/$name.addr" 2>/dev/null && break; sleep 0.1; done
  url[$name]="http://$(sed 's/listening on //' "$work/$name.addr")/"
}
start_epoll "epoll-http LT"
start_epoll "epoll-http ET" --edge
start_epoll "epoll-http LT --cork" --cork
port=$(free_port)
sed -e "s|PREFIX|$work|g" -e "s|PORT|$port|g" "$here/nginx.conf" > "$work/nginx.conf"
"$nginx_bin" -c "$work/nginx.conf" -p "$work" &
pids+=($!)
for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
url["nginx (1 worker)"]="http://127.0.0.1:$port/"
names=("epoll-http LT" "epoll-http ET" "epoll-http LT --cork" "nginx (1 worker)")

# wrk's summary -> "requests/s p99_ms"
measure() {  # url, kind
  local u=$1 kind=$2
  if [ "$kind" = pipelined ]; then
    wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$here/pipeline.lua" "$u" -- 16 > "$work/wrk.out"
  else
    wrk -t1 -c"$conns" -d"${secs}s" --latency "$u" > "$work/wrk.out"
  fi
  awk '/Requests\/sec/{rps=$2} /^ +99%/{v=$2; if (v ~ /us$/) {sub("us","",v); v/=1000} else if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /s$/) {sub("s","",v); v*=1000}; p99=v} END{printf "%.0f %.2f\n", rps, p99}' "$work/wrk.out"
}
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }

echo "wrk -t1 -c$conns -d${secs}s, $rounds rounds, medians; $(nproc) cores, $(uname -r)"
for kind in plain pipelined; do
  declare -A rps=() p99=()
  for r in $(seq "$rounds"); do
    for n in "${names[@]}"; do
      read -r a b < <(measure "${url[$n]}" "$kind")
      rps[$n]+="$a "; p99[$n]+="$b "
    done
  done
  echo
  echo "$kind ($([ "$kind" = pipelined ] && echo '16 requests per write' || echo 'one request in flight per connection')):"
  # wrk does not time each pipelined response, so its percentiles mean
  # nothing there: pipelined runs report throughput only.
  if [ "$kind" = pipelined ]; then
    echo "| server | requests/s |"
    echo "|---|---:|"
  else
    echo "| server | requests/s | p99 latency (ms) |"
    echo "|---|---:|---:|"
  fi
  for n in "${names[@]}"; do
    m_rps=$(tr ' ' '\n' <<<"${rps[$n]}" | grep . | median)
    m_p99=$(tr ' ' '\n' <<<"${p99[$n]}" | grep . | median)
    if [ "$kind" = pipelined ]; then
      echo "| $n | $m_rps |"
    else
      echo "| $n | $m_rps | $m_p99 |"
    fi
  done
done
