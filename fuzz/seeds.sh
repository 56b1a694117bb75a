#!/usr/bin/env bash
# Writes small seed corpora into fuzz/corpus/<target>/ (generated, not
# committed). Usage: fuzz/seeds.sh   (safe to re-run; overwrites seeds only)
set -euo pipefail
cd "$(dirname "$0")"
for t in envelope framer resource_list trigger; do mkdir -p "corpus/$t"; done

CRLF=$'\r\n'
# msg HEAD_LINES... -- BODY : a SIP message with CRLF line ends and a
# Content-Length that matches BODY.
msg() {
    local out="" body=""
    while [ $# -gt 0 ]; do
        if [ "$1" = "--" ]; then body="$2"; break; fi
        out+="$1$CRLF"; shift
    done
    printf '%s' "${out}Content-Length: ${#body}${CRLF}${CRLF}${body}"
}
DIALOG=("Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bK1" "f: <sip:alice@example.com>;tag=a1"
        "To: <sip:bob@example.com>;tag=b2" "i: call-1@192.0.2.1" "Max-Forwards: 70")

LIST="<?xml version=\"1.0\" encoding=\"UTF-8\"?>${CRLF}<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">${CRLF}  <list>${CRLF}    <entry uri=\"sip:carol@example.com\"/>${CRLF}    <entry uri=\"sip:dave@example.com?Replaces=x%3Bto-tag%3D1\"><display-name>Dave</display-name></entry>${CRLF}  </list>${CRLF}</resource-lists>${CRLF}"
SDP="v=0${CRLF}o=- 1 1 IN IP4 192.0.2.1${CRLF}s=-${CRLF}c=IN IP4 192.0.2.1${CRLF}t=0 0${CRLF}m=message 7654 TCP/MSRP *${CRLF}a=accept-types:text/plain${CRLF}"
MP="--b1${CRLF}Content-Type: application/resource-lists+xml${CRLF}Content-ID: <l1@a>${CRLF}${CRLF}${LIST}${CRLF}--b1--${CRLF}"

INVITE=$(msg "INVITE sip:bob@example.com SIP/2.0" "${DIALOG[@]}" "CSeq: 1 INVITE" \
    "Contact: <sip:alice@192.0.2.1:5060;transport=tcp>" "Subject: hello,${CRLF}  folded" \
    "c: application/sdp" -- "$SDP")
REFER=$(msg "REFER sip:bob@example.com SIP/2.0" "${DIALOG[@]}" "CSeq: 2 REFER" \
    "Refer-To: <sip:carol@example.com;method=INVITE?Replaces=abc%3Bto-tag%3D1>" "Refer-Sub: false" -- "")
MREFER=$(msg "REFER sip:bob@example.com SIP/2.0" "${DIALOG[@]}" "CSeq: 3 REFER" \
    "r: <cid:list1@a.example>" "Require: multiple-refer" "Content-Type: application/resource-lists+xml" \
    "Content-Disposition: recipient-list" "Content-ID: <list1@a.example>" -- "$LIST")
MPREFER=$(msg "REFER sip:bob@example.com SIP/2.0" "${DIALOG[@]}" "CSeq: 4 REFER" \
    "Refer-To: <cid:l1@a>" "Require: multiple-refer" "Content-Type: multipart/mixed;boundary=b1" -- "$MP")
INFO=$(msg "INFO sip:bob@example.com SIP/2.0" "${DIALOG[@]}" "CSeq: 5 INFO" \
    "Content-Type: application/vnd.example.add-user" -- "sip:carol@example.com${CRLF}<sip:dave@example.com;user=phone>${CRLF}")
ADDUSER=$(msg "ADDUSER sip:bob@example.com SIP/2.0" "${DIALOG[@]}" "CSeq: 6 ADDUSER" \
    "Content-Type: application/resource-lists+xml" -- "$LIST")
REGISTER=$(msg "REGISTER sip:example.com SIP/2.0" "v: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK9" \
    "From: <sip:alice@example.com>;tag=r1" "t: <sip:alice@example.com>" "Call-ID: reg-1" "CSeq: 1 REGISTER" \
    "m: <sip:alice@[2001:db8::1]:5060>;expires=3600" -- "")
OK=$(msg "SIP/2.0 200 OK" "${DIALOG[@]}" "CSeq: 1 INVITE" -- "")
NOLEN="OPTIONS sip:x SIP/2.0${CRLF}Call-ID: n${CRLF}${CRLF}trailing"

# w FILE PREFIX DATA: PREFIX is printf escapes (the target's control bytes,
# NULs included), DATA is written as is.
w() { { printf "$2"; printf '%s' "$3"; } > "corpus/$1"; }
for name in INVITE REFER MREFER MPREFER INFO ADDUSER REGISTER OK NOLEN; do
    w "envelope/$name" "" "${!name}"
    # framer: 2 bytes of cut position (little-endian), then a stream:
    # keep-alives and two messages
    w "framer/$name" '\x20\x00' "${CRLF}${CRLF}${!name}${REGISTER}"
    # trigger: 1 byte of policy choice, then the message
    for p in 0 4 8 c; do w "trigger/$name-$p" "\\x0$p" "${!name}"; done
done
w framer/split-in-head '\x05\x00' "${INVITE}${OK}"
# resource_list: 1 byte of max entries, then the document
w resource_list/list '\x0a' "${LIST}"
w resource_list/prefixed '\x03' "<rl:resource-lists xmlns:rl=\"urn:ietf:params:xml:ns:resource-lists\"><rl:list><rl:entry uri=\" sip:a@x \"/><rl:list><rl:entry uri=\"sip:b@x\"/></rl:list></rl:list></rl:resource-lists>"
w resource_list/nested '\x02' "<resource-lists><list><list><list><entry uri=\"sip:c@x\"/></list></list></list></resource-lists>"
echo "seeds written: $(find corpus -type f | wc -l) files"
