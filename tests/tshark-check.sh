#!/usr/bin/env bash
# Capture one end-to-end escalation (`escalator demo`: host, escalation
# plugin, test user agents on loopback) and have Wireshark's SIP dissector
# check every packet: none may be malformed, and the conference INVITE's
# SDP and resource-list parts must be dissected.
set -euo pipefail
bin=${1:-target/debug/escalator}
pcap=$(mktemp --suffix .pcap)
trap 'rm -f "$pcap"' EXIT

tshark -i lo -f udp -w "$pcap" -q 2>/dev/null &
capture=$!
for _ in $(seq 100); do [ -s "$pcap" ] && break; sleep 0.1; done
"$bin" demo >/dev/null
sleep 1
kill "$capture"; wait "$capture" 2>/dev/null || true

frames=$(tshark -r "$pcap" -Y sip 2>/dev/null | wc -l)
malformed=$(tshark -r "$pcap" -Y '_ws.malformed || _ws.expert.severity >= error' 2>/dev/null | wc -l)
conference=$(tshark -r "$pcap" -Y 'sip.Method == "INVITE" && sdp && xml' 2>/dev/null | wc -l)
echo "tshark: $frames SIP packets, $malformed malformed, $conference conference INVITE with SDP and resource-list parts"
if [ "$frames" -lt 20 ] || [ "$malformed" -ne 0 ] || [ "$conference" -lt 1 ]; then
    echo "tshark check failed" >&2
    tshark -r "$pcap" -Y '_ws.malformed || _ws.expert.severity >= error' -V 2>/dev/null | head -60 >&2
    exit 1
fi
