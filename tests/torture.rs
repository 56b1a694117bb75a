//! RFC 4475 §3 ("SIP Torture Test Messages") end to end, over UDP and over
//! TCP: every message of the RFC, written out here from its description,
//! goes from alice (raw bytes) to the host, and the test sees what comes
//! out: relayed to bob (the core) with its meaning kept, refused to alice
//! with the status RFC 3261 names (and nothing at bob), or nothing at all
//! where silence is what the RFCs ask for. A few cases of our own follow
//! the RFC's (control bytes, smuggling, limits).
//!
//! The expectations are RFC 3261's (and RFC 4475's reading of it). Every
//! case runs; the failures are listed together at the end, each under its
//! section number and tag.
//!
//! Adaptations: the top Via's sent-by is alice's real address and transport
//! (an answer must reach her), and each Call-ID gets a prefix unique to the
//! case and transport; everything else, odd bytes included, is as the RFC
//! describes it (longreq and ltgtruri note their one further change).
//! Content-Length values are computed (`$LEN`) where the RFC's message is
//! well framed and written literally where the framing is the point
//! (clerr, ncl, mcl01). `TORTURE_TRACE=1` prints what the host did with
//! each message.
//!
//! RFC 4475 §3.2 has one message (3.2.1) and §3.4 one (3.4.1): there is no
//! 3.2.2-3.2.3 or 3.4.2-3.4.3 to cover.

use escalator_e2e::{loopback, Rig};
use escalator_host::sip::uri::host_port;
use escalator_host::sip::{NameAddr, SipMessage, Via};
use escalator_host::transport::Proto;
use escalator_testkit::ua::{TestUa, UaError};
use std::net::SocketAddr;
use std::time::Duration;

// ---------------------------------------------------------------------------
// The table's vocabulary
// ---------------------------------------------------------------------------

/// What a case's message is built from: alice's sent-by, the transport's
/// Via name, and the Call-ID prefix of this case on this transport.
struct Ctx {
    via: String,
    t: &'static str,
    cid: String,
}

/// A check on a message as its receiver reads it.
type Check = fn(&SipMessage) -> Result<(), String>;

/// Relayed: bob receives the request, with its meaning kept.
#[derive(Clone, Copy)]
struct Relay {
    method: &'static str,
    /// The RFC's Call-ID (without the per-case prefix): the answer alice
    /// gets back must carry hers.
    call_id: &'static str,
    cseq: u32,
    /// Body length bob must receive.
    body: usize,
    /// On the request as bob reads it.
    at_bob: Option<Check>,
    /// On the final answer as alice reads it.
    at_alice: Option<Check>,
    /// More requests legitimately follow on the stream (TCP dblreq): do not
    /// require bob to hear nothing else.
    more: bool,
}

impl Relay {
    fn bob(mut self, c: Check) -> Relay {
        self.at_bob = Some(c);
        self
    }
    fn alice(mut self, c: Check) -> Relay {
        self.at_alice = Some(c);
        self
    }
    fn more(mut self) -> Relay {
        self.more = true;
        self
    }
}

fn relay(method: &'static str, call_id: &'static str, cseq: u32, body: usize) -> Relay {
    Relay {
        method,
        call_id,
        cseq,
        body,
        at_bob: None,
        at_alice: None,
        more: false,
    }
}

#[derive(Clone, Copy)]
enum Expect {
    Relayed(Relay),
    /// Alice gets one of these statuses (the first is the one RFC 3261
    /// prefers), passing the check; bob gets nothing.
    Refused(&'static [u16], Option<Check>),
    /// Nothing reaches alice or bob.
    Silent,
}

impl From<Relay> for Expect {
    fn from(r: Relay) -> Expect {
        Expect::Relayed(r)
    }
}

fn refused(status: u16) -> Expect {
    let s: &'static [u16] = match status {
        400 => &[400],
        416 => &[416],
        420 => &[420],
        481 => &[481],
        483 => &[483],
        505 => &[505],
        513 => &[513],
        _ => panic!("add {status} to refused()"),
    };
    Expect::Refused(s, None)
}

fn refused_with(statuses: &'static [u16], check: Check) -> Expect {
    Expect::Refused(statuses, Some(check))
}

const SILENT: Expect = Expect::Silent;

struct Case {
    name: &'static str,
    msg: fn(&Ctx) -> Vec<u8>,
    udp: Expect,
    tcp: Expect,
}

fn case(name: &'static str, msg: fn(&Ctx) -> Vec<u8>, both: impl Into<Expect>) -> Case {
    let e = both.into();
    Case {
        name,
        msg,
        udp: e,
        tcp: e,
    }
}

impl Case {
    fn over_tcp(mut self, e: impl Into<Expect>) -> Case {
        self.tcp = e.into();
        self
    }
}

// ---------------------------------------------------------------------------
// Building the bytes
// ---------------------------------------------------------------------------

/// A message from its template: `$VIA` alice's sent-by, `$T` the transport,
/// `$CID` the Call-ID prefix, `$SP` a space that must survive editors;
/// lines end in CRLF; then the odd bytes (`$CR`, `$LF` bare; `$NUL`, `$BEL`,
/// `$ESC`, `$DEL`, `$BOM`; `$XFF` the byte 0xFF, no UTF-8) and `$LEN`, the
/// length of what follows the first blank line.
fn sip(c: &Ctx, template: &str) -> Vec<u8> {
    let text = template
        .replace("$VIA", &c.via)
        .replace("$CID", &c.cid)
        .replace("$T", c.t)
        .replace("$SP", " ")
        .replace("$BOM", "\u{feff}")
        .replace('\n', "\r\n")
        .replace("$CR", "\r")
        .replace("$LF", "\n")
        .replace("$NUL", "\0")
        .replace("$BEL", "\x07")
        .replace("$ESC", "\x1b")
        .replace("$DEL", "\x7f");
    let bytes = replace_bytes(text.into_bytes(), b"$XFF", &[0xff]);
    with_len(bytes)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn replace_bytes(mut b: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    while let Some(i) = find(&b, from) {
        b.splice(i..i + from.len(), to.iter().copied());
    }
    b
}

fn with_len(b: Vec<u8>) -> Vec<u8> {
    let Some(end) = find(&b, b"\r\n\r\n") else {
        return b;
    };
    let body = b.len() - end - 4;
    replace_bytes(b, b"$LEN", body.to_string().as_bytes())
}

// ---------------------------------------------------------------------------
// RFC 4475 §3.1.1: valid messages
// ---------------------------------------------------------------------------

const SDP_150: &str = "v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.3
s=-
c=IN IP4 192.0.2.4
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
";

const WSINV: &str = r#"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: $CIDwsinv.ndaksdj@192.0.2.1
Content-Length   : $LEN
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /$T
    $VIA;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

"#;

fn wsinv(c: &Ctx) -> Vec<u8> {
    sip(c, &format!("{WSINV}{SDP_150}"))
}

/// wsinv without its To tag: a new INVITE, so it is relayed and bob's
/// reading of the whitespace-laden fields can be checked.
fn wsinv_untagged(c: &Ctx) -> Vec<u8> {
    let t = WSINV.replace(" ;   tag    = 1918181833n", "");
    sip(c, &format!("{t}{SDP_150}"))
}

const INTMETH: &str = r#"!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0
Via: SIP/2.0/$T $VIA;branch=z9hG4bK-.!%66*_+`'~
To: "BEL:\$BEL NUL:\$NUL DEL:\$DEL" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@example.com>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="работающий";tag=_token~1'+`*%!-.
Call-ID: $CIDintmeth.word%ZK-!.*_+'@word`~)(><:\/"][?}{
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
Max-Forwards: 255
extensionHeader-!.%*+_`'~: $BOM大停電
Content-Length: 0

"#;

const INTMETH_METHOD: &str = "!interesting-Method0123456789_*+`.%indeed'~";

const ESC01: &str = "INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: $CIDesc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: $LEN

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
";

const ESCNULL: &str = "REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: $CIDescnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0

";

const ESC02: &str = r#"RE%47IST%45R sip:registrar.example.com SIP/2.0
To: "%Z%45" <sip:resource@example.com>
From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: $CIDesc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/$T $VIA;branch=z9hG4bK209%fzsnel234
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
C%6Fntact: <sip:alias2@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0

"#;

const LWSDISP: &str = "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: $CIDlwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
l: 0

";

const LONG_TO_DISPLAY: &str = "I have a user name of extremeextremeextremeextremeextremeextremeextremeextremeextremeextreme proportion";
const LONG_HEADER_NAME: &str =
    "Unknown-LongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLongLong-Name";
const LONG_HEADER_VALUE: &str = "unknown-longlonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong-value; unknown-longlonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong-parameter-name = unknown-longlonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglong-parameter-value";
const LONGREQ_CALL_ID: &str = "longreq.onereallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallyreallylongcallid";

/// longreq: alice's Via goes on top of the RFC's 34 (she is one more hop;
/// the RFC's top Via, without a branch, stays as the second).
fn longreq(c: &Ctx) -> Vec<u8> {
    let mut vias = String::from("Via: SIP/2.0/TCP sip33.example.com\nv: SIP/2.0/TCP sip32.example.com\nV: SIP/2.0/TCP sip31.example.com\nVia: SIP/2.0/TCP sip30.example.com\nViA: SIP/2.0/TCP sip29.example.com\nVIa: SIP/2.0/TCP sip28.example.com\nVIA: SIP/2.0/TCP sip27.example.com\nvia: SIP/2.0/TCP sip26.example.com\nviA: SIP/2.0/TCP sip25.example.com\nvIa: SIP/2.0/TCP sip24.example.com\nvIA: SIP/2.0/TCP sip23.example.com\nV :  SIP/2.0/TCP sip22.example.com\nv :  SIP/2.0/TCP sip21.example.com\nV  : SIP/2.0/TCP sip20.example.com\nv  : SIP/2.0/TCP sip19.example.com\nVia : SIP/2.0/TCP sip18.example.com\nVia  : SIP/2.0/TCP sip17.example.com\n");
    for i in (1..=16).rev() {
        vias.push_str(&format!("Via: SIP/2.0/TCP sip{i}.example.com\n"));
    }
    vias.push_str("Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongbranchvalue\n");
    let t = format!(
        "INVITE sip:user@example.com SIP/2.0
To: \"{LONG_TO_DISPLAY}\"<sip:user@example.com:6000;unknownparam1=verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongvalue;longparamnamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamename=shortvalue;verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongParameterNameWithNoValue>
F: sip:amazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallername@example.net;tag=12982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982982424;unknownheaderparamnamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamename=unknowheaderparamvaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevaluevalue;unknownValuelessparamnameparamnameparamnameparamnameparamnameparamnameparamnameparamnameparamnameparamname
Call-ID: $CID{LONGREQ_CALL_ID}
CSeq: 3882340 INVITE
{LONG_HEADER_NAME}: {LONG_HEADER_VALUE}
Via: SIP/2.0/$T $VIA;branch=z9hG4bKlongreq
{vias}Max-Forwards: 70
Contact: <sip:amazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallernameamazinglylongcallername@host5.example.net>
Content-Type: application/sdp
l: $LEN

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"
    );
    sip(c, &t)
}

/// dblreq: a REGISTER and, in the same datagram after its (empty) body, the
/// octets of an INVITE; RFC 3261 §18.3 discards them. Written as the RFC
/// has them (the INVITE's own Content-Length is off by three).
fn dblreq(c: &Ctx) -> Vec<u8> {
    let mut b = sip(
        c,
        "REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: $CIDdblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw23492
Content-Length: 0

",
    );
    b.extend(sip(
        c,
        "INVITE sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: $CIDdblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: 150

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.15
s=-
c=IN IP4 192.0.2.15
t=0 0
m=audio 49217 RTP/AVP 0 12
m =video 3227 RTP/AVP 31
a=rtpmap:31 LPC
",
    ));
    b
}

const SEMIURI: &str = "OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: $CIDsemiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
l: 0

";

const TRANSPORTS: &str = "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  $CIDtransports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0

";

const MPART_LEN: usize = 553;

/// mpart01's body: a text part and a binary one (NULs, bare CR and LF, every
/// byte value), 553 octets as in the RFC.
fn mpart_body() -> Vec<u8> {
    let head = b"--7a9cbec02ceef655\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: binary\r\n\r\nHello\r\n--7a9cbec02ceef655\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n";
    let tail = b"\r\n--7a9cbec02ceef655--\r\n";
    let n = MPART_LEN - head.len() - tail.len();
    let mut b = head.to_vec();
    b.extend((0..n).map(|i| ((i * 37 + 11) % 256) as u8));
    b.extend_from_slice(tail);
    b
}

fn mpart01(c: &Ctx) -> Vec<u8> {
    let mut b = sip(
        c,
        "MESSAGE sip:kumiko@example.org SIP/2.0
Via: SIP/2.0/$T $VIA;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport
Max-Forwards: 70
Route: <sip:127.0.0.1:5080>
Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZngQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA=
Contact: <sip:fluffy@127.0.0.1:5070>
To: <sip:kumiko@example.org>
From: <sip:fluffy@example.com>;tag=2fb0dcc9
Call-ID: $CID3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..
CSeq: 1 MESSAGE
Content-Transfer-Encoding: binary
Content-Type: multipart/mixed;boundary=7a9cbec02ceef655
Date: Sat, 15 Oct 2005 04:44:56 GMT
User-Agent: SIPimp.org/0.2.5 (curses)
Content-Length: 553

",
    );
    b.extend(mpart_body());
    b
}

const UNREASON: &str = "SIP/2.0 200 = 2**3 * 5**2 но сто девяносто девять - простое
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: $CIDunreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: $LEN
Content-Type: application/sdp
Contact: <sip:user@host198.example.com>

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.198
s=-
c=IN IP4 192.0.2.198
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
";

const NOREASON: &str = "SIP/2.0 100$SP
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: $CIDnoreason.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

";

// ---------------------------------------------------------------------------
// RFC 4475 §3.1.2: invalid messages
// ---------------------------------------------------------------------------

fn sdp(host: &str, t: &str) -> String {
    format!(
        "v=0
o=mhandley 29739 7272939 IN IP4 {host}
s=-
c=IN IP4 {host}
t={t}
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"
    )
}

fn badinv01(c: &Ctx) -> Vec<u8> {
    let t = r#"INVITE sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: $CIDbadinv01.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/$T $VIA;;,;,,
Contact: "Joe" <sip:joe@example.org>;;;;
Content-Length: $LEN
Content-Type: application/sdp

"#;
    sip(c, &format!("{t}{}", sdp("192.0.2.15", "0 0")))
}

fn clerr(c: &Ctx) -> Vec<u8> {
    let t = "INVITE sip:user@example.com SIP/2.0
Max-Forwards: 80
To: sip:j.user@example.com
From: sip:caller@example.net;tag=93942939o2
Contact: <sip:caller@hungry.example.net>
Call-ID: $CIDclerr.0ha0isndaksdjweiafasdk3
CSeq: 8 INVITE
Via: SIP/2.0/$T $VIA;branch=z9hG4bK-39234-23523
Content-Type: application/sdp
Content-Length: 9999

";
    sip(c, &format!("{t}{}", sdp("192.0.2.155", "0 0")))
}

fn ncl(c: &Ctx) -> Vec<u8> {
    let t = "INVITE sip:user@example.com SIP/2.0
Max-Forwards: 254
To: sip:j.user@example.com
From: sip:caller@example.net;tag=32394234
Call-ID: $CIDncl.0ha0isndaksdj2193423r542w35
CSeq: 0 INVITE
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
Contact: <sip:caller@example53.example.net>
Content-Type: application/sdp
Content-Length: -999

";
    sip(c, &format!("{t}{}", sdp("192.0.2.53", "0 0")))
}

fn scalar02(c: &Ctx) -> Vec<u8> {
    let t = "REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/$T $VIA;branch=z9hG4bK342sdfoi3
To: <sip:user@example.com>
From: <sip:user@example.com>;tag=239232jh3
CSeq: 36893488147419103232 REGISTER
Call-ID: $CIDscalar02.23o0pd9vanlq3wnrlnewofjas9ui32
Max-Forwards: 300
Expires: 1$ZEROS
Contact: <sip:user@host129.example.com>
  ;expires=280297596632815
Content-Length: 0

";
    sip(c, &t.replace("$ZEROS", &"0".repeat(100)))
}

const SCALARLG: &str = r#"SIP/2.0 503 Service Unavailable
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129
To: <sip:user@example.com>
From: <sip:other@example.net>;tag=2easdjfejw
CSeq: 9292394834772304023312 OPTIONS
Call-ID: $CIDscalarlg.noase0of0234hn2qofoaf0232aewf2394r
Retry-After: 949302838503028349304023988
Warning: 1812 overture "In Progress"
Content-Length: 0

"#;

fn quotbal(c: &Ctx) -> Vec<u8> {
    let t = r#"INVITE sip:user@example.com SIP/2.0
To: "Mr. J. User <sip:j.user@example.com>
From: sip:caller@example.net;tag=93334
Max-Forwards: 10
Call-ID: $CIDquotbal.aksdj
Contact: <sip:caller@host59.example.net>
CSeq: 8 INVITE
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw39234
Content-Type: application/sdp
Content-Length: $LEN

"#;
    sip(c, &format!("{t}{}", sdp("192.0.2.15", "0 0")))
}

/// ltgtruri: the RFC's Via has no branch; one is added here so that the
/// 400 is the brackets', not RFC 2543's missing branch (3.4.1's subject).
fn ltgtruri(c: &Ctx) -> Vec<u8> {
    let t = "INVITE <sip:user@example.com> SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=39291
Max-Forwards: 23
Call-ID: $CIDltgtruri.1@192.0.2.5
CSeq: 1 INVITE
Via: SIP/2.0/$T $VIA;branch=z9hG4bKltgtruri
Contact: <sip:caller@host5.example.net>
Content-Type: application/sdp
Content-Length: $LEN

";
    sip(c, &format!("{t}{}", sdp("192.0.2.5", "3149328700 0")))
}

fn lwsruri(c: &Ctx) -> Vec<u8> {
    let t = "INVITE sip:user@example.com; lr SIP/2.0
To: sip:user@example.com;tag=3xfe-9921883-z9f
From: sip:caller@example.net;tag=231413434
Max-Forwards: 5
Call-ID: $CIDlwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423
CSeq: 2130706432 INVITE
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw2395
Contact: <sip:caller@host1.example.net>
Content-Type: application/sdp
Content-Length: $LEN

";
    sip(c, &format!("{t}{}", sdp("192.0.2.1", "3149328700 0")))
}

fn lwsstart(c: &Ctx) -> Vec<u8> {
    let t = "INVITE  sip:user@example.com  SIP/2.0
Max-Forwards: 8
To: sip:user@example.com
From: sip:caller@example.net;tag=8814
Call-ID: $CIDlwsstart.dfknq234oi243099adsdfnawe3@example.com
CSeq: 1893884 INVITE
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw3923
Contact: <sip:caller@host1.example.net>
Content-Type: application/sdp
Content-Length: $LEN

";
    sip(c, &format!("{t}{}", sdp("192.0.2.1", "0 0")))
}

const TRWS: &str = "OPTIONS sip:remote-target@example.com SIP/2.0$SP$SP
Via: SIP/2.0/$T $VIA;branch=z9hG4bK299342093
To: <sip:remote-target@example.com>
From: <sip:local-resource@example.com>;tag=329429089
Call-ID: $CIDtrws.oicu34958239neffasdhr2345r
Accept: application/sdp
CSeq: 238923 OPTIONS
Max-Forwards: 70
Content-Length: 0

";

fn escruri(c: &Ctx) -> Vec<u8> {
    let t = "INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=341518
Max-Forwards: 7
Contact: <sip:caller@host39923.example.net>
Call-ID: $CIDescruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5
CSeq: 149209342 INVITE
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
Content-Type: application/sdp
Content-Length: $LEN

";
    sip(c, &format!("{t}{}", sdp("192.0.2.1", "0 0")))
}

fn baddate(c: &Ctx) -> Vec<u8> {
    let t = "INVITE sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=2234923
Max-Forwards: 70
Call-ID: $CIDbaddate.239423mnsadf3j23lj42--sedfnm234
CSeq: 1392934 INVITE
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
Date: Fri, 01 Jan 2010 16:00:00 EST
Contact: <sip:caller@host5.example.net>
Content-Type: application/sdp
Content-Length: $LEN

";
    sip(c, &format!("{t}{}", sdp("192.0.2.5", "0 0")))
}

const REGBADCT: &str = "REGISTER sip:example.com SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=998332
Max-Forwards: 70
Call-ID: $CIDregbadct.k345asrl3fdbv@10.0.0.1
CSeq: 1 REGISTER
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E
l: 0

";

const BADASPEC: &str = r#"OPTIONS sip:user@example.org SIP/2.0
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdju43234
Max-Forwards: 70
From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423
To: "Watson, Thomas" < sip:t.watson@example.org >
Call-ID: $CIDbadaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

"#;

const BADDN: &str = "OPTIONS sip:t.watson@example.org SIP/2.0
Via:     SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
Max-Forwards:      70
From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43
To:      Watson, Thomas <sip:t.watson@example.org>
Call-ID: $CIDbaddn.31415@c.example.com
Accept: application/sdp
CSeq:    3923239 OPTIONS
l: 0

";

const BADVERS: &str = "OPTIONS sip:t.watson@example.org SIP/7.0
Via:     SIP/7.0/$T $VIA;branch=z9hG4bKkdjuw
Max-Forwards:     70
From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe
To:      T. Watson <sip:t.watson@example.org>
Call-ID: $CIDbadvers.31417@c.example.com
CSeq:    1 OPTIONS
l: 0

";

const MISMATCH01: &str = "OPTIONS sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: $CIDmismatch01.dj0234sxdfl3
CSeq: 8 INVITE
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
l: 0

";

const MISMATCH02: &str = "NEWMETHOD sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: $CIDmismatch02.dj0234sxdfl3
CSeq: 8 INVITE
Contact: <sip:caller@host.example.net>
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
Content-Type: application/sdp
l: $LEN

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
c=IN IP4 192.0.2.1
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
";

const BIGCODE: &str = "SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: $CIDbigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

";

// ---------------------------------------------------------------------------
// RFC 4475 §3.2, §3.3, §3.4
// ---------------------------------------------------------------------------

const BADBRANCH: &str = "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Via: SIP/2.0/$T $VIA;branch=z9hG4bK
Accept: application/sdp
Call-ID: $CIDbadbranch.sadonfo23i420jv0as0derf3j3n
CSeq: 8 OPTIONS
l: 0

";

fn insuf(c: &Ctx) -> Vec<u8> {
    let t = "INVITE sip:user@example.com SIP/2.0
CSeq: 193942 INVITE
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdj.insuf
Content-Type: application/sdp
l: $LEN

";
    sip(c, &format!("{t}{}", sdp("192.0.2.95", "0 0")))
}

const UNKSCM: &str = "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: $CIDunkscm.nasdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw39234
Content-Length: 0

";

const NOVELSC: &str = "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: $CIDnovelsc.asdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw39234
Content-Length: 0

";

const UNKSM2: &str = "REGISTER sip:example.com SIP/2.0
To: isbn:2983792873
From: <http://www.example.com>;tag=3234233
Call-ID: $CIDunksm2.daksdj@hyphenated-host.example.com
CSeq: 234902 REGISTER
Max-Forwards: 70
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
Contact: <name:John_Smith>
l: 0

";

const BEXT01: &str = "OPTIONS sip:user@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.net;tag=242etr
Max-Forwards: 6
Call-ID: $CIDbext01.0ha0isndaksdj
Require: nothingSupportsThis, nothingSupportsThisEither
Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis
CSeq: 8 OPTIONS
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
Content-Length: 0

";

const INVUT: &str = r#"INVITE sip:user@example.com SIP/2.0
Contact: <sip:caller@host5.example.net>
To: sip:j.user@example.com
From: sip:caller@example.net;tag=8392034
Max-Forwards: 70
Call-ID: $CIDinvut.0ha0isndaksdjadsfij34n23d
CSeq: 235448 INVITE
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
Content-Type: application/unknownformat
Content-Length: $LEN

<audio>
 <pcmu port="443"/>
</audio>
"#;

const REGAUT01: &str = "REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=87321hj23128
Max-Forwards: 8
Call-ID: $CIDregaut01.0ha0isndaksdj
CSeq: 9338 REGISTER
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
Authorization: NoOneKnowsThisScheme opaque-data=here
Content-Length:0

";

fn multi01(c: &Ctx) -> Vec<u8> {
    let t = "INVITE sip:user@company.com SIP/2.0
Contact: <sip:caller@host25.example.net>
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
Max-Forwards: 70
CSeq: 5 INVITE
Call-ID: $CIDmulti01.98asdh@192.0.2.1
CSeq: 59 INVITE
Call-ID: $CIDmulti01.98asdh@192.0.2.2
From: sip:caller@example.com;tag=3413415
To: sip:user@example.com
To: sip:other@example.net
From: sip:caller@example.net;tag=2923420123
Content-Type: application/sdp
l: $LEN
Contact: <sip:caller@host36.example.net>
Max-Forwards: 5

";
    sip(c, &format!("{t}{}", sdp("192.0.2.25", "0 0")))
}

const MCL01: &str = "OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/$T $VIA;branch=z9hG4bK293423
To: sip:user@example.com
From: sip:other@example.net;tag=3923942
Call-ID: $CIDmcl01.fhn2323orihawfdoa3o4r52o3irsdf
CSeq: 15932 OPTIONS
Content-Length: 13
Max-Forwards: 60
Content-Length: 5
Content-Type: text/plain

There's no way to know how many octets are supposed to be here.
";

fn bcast(c: &Ctx) -> Vec<u8> {
    let t = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23
Call-ID: $CIDbcast.0384840201234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: $LEN
Content-Type: application/sdp
Contact: <sip:user@host28.example.com>

";
    sip(c, &format!("{t}{}", sdp("192.0.2.198", "0 0")))
}

const ZEROMF: &str = "OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=3ghsd41
Call-ID: $CIDzeromf.jfasdlfnm2o2l43r5u0asdfas
CSeq: 39234321 OPTIONS
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw2349i
Max-Forwards: 0
Content-Length: 0

";

const CPARAM01: &str = "REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe
To: sip:watson@example.com
Call-ID: $CIDcparam01.70710@saturn.example.com
CSeq: 2 REGISTER
Contact: sip:+19725552222@gw1.example.net;unknownparam
l: 0

";

const CPARAM02: &str = "REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@example.com;tag=838293
To: sip:watson@example.com
Call-ID: $CIDcparam02.70710@saturn.example.com
CSeq: 3 REGISTER
Contact: <sip:+19725552222@gw1.example.net;unknownparam>
l: 0

";

const REGESCRT: &str = "REGISTER sip:example.com SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=8
Max-Forwards: 70
Call-ID: $CIDregescrt.k345asrl3fdbv@192.0.2.1
CSeq: 14398234 REGISTER
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>
L:0

";

fn sdp01(c: &Ctx) -> Vec<u8> {
    let t = "INVITE sip:user@example.com SIP/2.0
To: sip:j_user@example.com
Contact: <sip:caller@host15.example.net>
From: sip:caller@example.net;tag=234
Max-Forwards: 5
Call-ID: $CIDsdp01.ndaksdj9342dasdd
Accept: text/nobodyKnowsThis
CSeq: 8 INVITE
Via: SIP/2.0/$T $VIA;branch=z9hG4bKkdjuw
Content-Length: $LEN
Content-Type: application/sdp

";
    sip(c, &format!("{t}{}", sdp("192.0.2.5", "0 0")))
}

/// inv2543: no branch, no From tag, no Max-Forwards, no Content-Length (the
/// body is the rest of the datagram).
const INV2543: &str = "INVITE sip:UserB@example.com SIP/2.0
Via: SIP/2.0/$T $VIA
From: <sip:+13035551111@ift.client.example.net;user=phone>
Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>
To: sip:+16505552222@ss1.example.net;user=phone
Call-ID: $CIDinv2543.1717@ift.client.example.com
CSeq: 56 INVITE
Content-Type: application/sdp

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 49217 RTP/AVP 0
";

// ---------------------------------------------------------------------------
// Cases of our own (framing, smuggling, control bytes, limits)
// ---------------------------------------------------------------------------

/// A plain OPTIONS with `extra` header lines (already CRLF-free text,
/// each ending in `\n`) before its Content-Length.
fn options_with(c: &Ctx, extra: &str) -> Vec<u8> {
    sip(
        c,
        &format!(
            "OPTIONS sip:bob@example.com SIP/2.0
Via: SIP/2.0/$T $VIA;branch=z9hG4bKextra
Max-Forwards: 70
From: <sip:alice@example.com>;tag=x1
To: <sip:bob@example.com>
Call-ID: $CIDextra@example.com
CSeq: 1 OPTIONS
{extra}Content-Length: 0

"
        ),
    )
}

/// A whole INVITE as the body of an OPTIONS whose `Content-Length: 466` is
/// followed by the folded continuation ` l: 0`: read as a fold the length
/// is `466 l: 0` (no number); read line by line a second Content-Length
/// of 0 makes the INVITE a message of its own.
fn smuggle(c: &Ctx) -> Vec<u8> {
    let inner = |pad: usize| {
        format!(
            "INVITE sip:smuggled@example.com SIP/2.0\r\n\
Via: SIP/2.0/{} {};branch=z9hG4bKsmuggled\r\n\
Max-Forwards: 70\r\n\
From: <sip:eve@example.com>;tag=s1\r\n\
To: <sip:smuggled@example.com>\r\n\
Call-ID: {}smuggled@example.com\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:eve@{}>\r\n\
X-Pad: {}\r\n\
Content-Length: 0\r\n\r\n",
            c.t,
            c.via,
            c.cid,
            c.via,
            "p".repeat(pad)
        )
    };
    let pad = 466 - inner(0).len();
    let smuggled = inner(pad);
    assert_eq!(smuggled.len(), 466);
    let mut b = sip(
        c,
        "OPTIONS sip:bob@example.com SIP/2.0
Via: SIP/2.0/$T $VIA;branch=z9hG4bKouter
Max-Forwards: 70
From: <sip:alice@example.com>;tag=x1
To: <sip:bob@example.com>
Call-ID: $CIDouter@example.com
CSeq: 1 OPTIONS
Content-Length: 466
 l: 0

",
    );
    b.extend_from_slice(smuggled.as_bytes());
    b
}

fn many_headers(c: &Ctx) -> Vec<u8> {
    let extra: String = (0..300).map(|i| format!("X-Many-{i}: v\n")).collect();
    options_with(c, &extra)
}

fn oversized(c: &Ctx) -> Vec<u8> {
    options_with(c, &format!("X-Pad: {}\n", "a".repeat(20_000)))
}

fn duplicate(c: &Ctx, header: &str) -> Vec<u8> {
    let b = options_with(c, "");
    let text = String::from_utf8(b).expect("utf-8");
    let (line, second) = match header {
        "Call-ID" => (
            format!("Call-ID: {}extra@example.com\r\n", c.cid),
            format!("Call-ID: {}other@example.com\r\n", c.cid),
        ),
        "CSeq" => ("CSeq: 1 OPTIONS\r\n".into(), "CSeq: 2 OPTIONS\r\n".into()),
        _ => (
            "From: <sip:alice@example.com>;tag=x1\r\n".into(),
            "From: <sip:mallory@example.com>;tag=x2\r\n".into(),
        ),
    };
    text.replacen(&line, &format!("{line}{second}"), 1)
        .into_bytes()
}

const ACK_BARE_CR: &str = "ACK sip:bob@example.com SIP/2.0
Via: SIP/2.0/$T $VIA;branch=z9hG4bKackcr
Max-Forwards: 70
From: <sip:alice@example.com>;tag=x1
To: <sip:bob@example.com>;tag=y1
Call-ID: $CIDack@example.com
CSeq: 1 ACK
X-A: ok$CRInjected: yes
Content-Length: 0

";

const INVITE_REQUIRE: &str = "INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/$T $VIA;branch=z9hG4bKrequire
Max-Forwards: 70
From: <sip:alice@example.com>;tag=x1
To: <sip:bob@example.com>
Call-ID: $CIDrequire@example.com
CSeq: 1 INVITE
Contact: <sip:alice@$VIA>
Require: nothingSupportsThis
Content-Length: 0

";

const INVITE_STAR: &str = "INVITE sip:bob@example.com SIP/2.0
Via: SIP/2.0/$T $VIA;branch=z9hG4bKstar
Max-Forwards: 70
From: <sip:alice@example.com>;tag=x1
To: <sip:bob@example.com>
Call-ID: $CIDstar@example.com
CSeq: 1 INVITE
Contact: *
Content-Length: 0

";

// ---------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------

fn hdr_eq(m: &SipMessage, name: &str, want: &str) -> Result<(), String> {
    match m.header(name) {
        Some(v) if v == want => Ok(()),
        got => Err(format!("{name} read as {got:?}, want {want:?}")),
    }
}

fn ruri_eq(m: &SipMessage, want: &str) -> Result<(), String> {
    match m.request_uri() {
        Some(u) if u == want => Ok(()),
        got => Err(format!("Request-URI read as {got:?}, want {want:?}")),
    }
}

fn contacts_eq(m: &SipMessage, want: &[&str]) -> Result<(), String> {
    let got = m.header_values("Contact");
    if got == want {
        Ok(())
    } else {
        Err(format!("Contact read as {got:?}, want {want:?}"))
    }
}

fn name_addr(m: &SipMessage, name: &str) -> Result<NameAddr, String> {
    m.header(name)
        .and_then(NameAddr::parse)
        .ok_or_else(|| format!("{name} missing or unreadable: {:?}", m.header(name)))
}

/// A Warning value as RFC 3261 §20.43 writes it: `399 agent "text"`, the
/// text a quoted-string (no bare `"`, no control characters).
fn warning_well_formed(v: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("Warning {v:?} malformed: {why}"));
    let Some(rest) = v.strip_prefix("399 ") else {
        return bad("code is not 399");
    };
    let Some((agent, text)) = rest.split_once(' ') else {
        return bad("no agent and text");
    };
    if agent.is_empty() || agent.contains('"') {
        return bad("agent");
    }
    let Some(inner) = text.strip_prefix('"') else {
        return bad("text not quoted");
    };
    let mut chars = inner.chars();
    loop {
        match chars.next() {
            None => return bad("quoted text not closed"),
            Some('\\') => match chars.next() {
                Some(c) if c != '\r' && c != '\n' => {}
                _ => return bad("dangling escape"),
            },
            Some('"') => {
                return match chars.next() {
                    None => Ok(()),
                    Some(_) => bad("unescaped '\"' inside the text"),
                }
            }
            Some(c) if c.is_control() && c != '\t' => return bad("control character"),
            Some(_) => {}
        }
    }
}

fn warnings_well_formed(r: &SipMessage) -> Result<(), String> {
    r.headers
        .iter()
        .filter(|h| escalator_host::sip::message::name_is(&h.name, "Warning"))
        .try_for_each(|h| warning_well_formed(&h.value))
}

fn unsupported_lists(r: &SipMessage, tags: &[&str]) -> Result<(), String> {
    let got: Vec<&str> = r.header_values("Unsupported");
    for t in tags {
        if !got.contains(t) {
            return Err(format!("Unsupported {got:?} does not list {t}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

fn cases() -> Vec<Case> {
    vec![
        // ---- 3.1.1 valid messages ----
        // The To tag names a dialog the host does not have: RFC 3261 §12.2.2
        // says 481 (which also shows the tag was read through the LWS).
        case("3.1.1.1 wsinv", wsinv, refused(481)),
        // The same message without the To tag: a new INVITE, relayed with
        // its folded, oddly spaced fields read as RFC 3261 §7.3.1 reads them.
        case(
            "3.1.1.1 wsinv (To tag dropped)",
            wsinv_untagged,
            relay("INVITE", "wsinv.ndaksdj@192.0.2.1", 9, 150).bob(|m: &SipMessage| {
                ruri_eq(m, "sip:vivekg@chair-dnrc.example.com;unknownparam")?;
                hdr_eq(m, "NewFangledHeader", "newfangled value continued newfangled value")?;
                hdr_eq(m, "UnknownHeaderWithUnusualValue", ";;,,;;,;")?;
                hdr_eq(m, "Max-Forwards", "67")?;
                hdr_eq(m, "Content-Type", "application/sdp")?;
                let to = name_addr(m, "To")?;
                if to.uri != "sip:vivekg@chair-dnrc.example.com" {
                    return Err(format!("To URI read as {:?}", to.uri));
                }
                Ok(())
            }),
        ),
        // Valid (quoted-pair may quote NUL, BEL, DEL: RFC 3261 §25.1); an
        // unknown method outside a dialog is the core's to answer (501).
        case(
            "3.1.1.2 intmeth",
            |c: &Ctx| sip(c, INTMETH),
            relay(INTMETH_METHOD, "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{", 139122385, 0)
                .bob(|m: &SipMessage| {
                    ruri_eq(m, "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com")?;
                    hdr_eq(m, "extensionHeader-!.%*+_`'~", "\u{feff}大停電")
                }),
        ),
        case(
            "3.1.1.3 esc01",
            |c: &Ctx| sip(c, ESC01),
            relay("INVITE", "esc01.239409asdfakjkn23onasd0-3234", 234234, 150).bob(
                |m: &SipMessage| {
                    ruri_eq(m, "sip:sips%3Auser%40example.com@example.net")?;
                    let from = name_addr(m, "From")?;
                    if from.uri != "sip:I%20have%20spaces@example.net" {
                        return Err(format!("From URI read as {:?}", from.uri));
                    }
                    Ok(())
                },
            ),
        ),
        case(
            "3.1.1.4 escnull",
            |c: &Ctx| sip(c, ESCNULL),
            relay("REGISTER", "escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd", 14398234, 0).bob(
                |m: &SipMessage| {
                    hdr_eq(m, "To", "sip:null-%00-null@example.com")?;
                    contacts_eq(m, &["<sip:%00@host5.example.com>", "<sip:%00%00@host5.example.com>"])
                },
            ),
        ),
        // RE%47IST%45R is an unknown method, not REGISTER; C%6Fntact is no Contact.
        case(
            "3.1.1.5 esc02",
            |c: &Ctx| sip(c, ESC02),
            relay("RE%47IST%45R", "esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf", 29344, 0).bob(
                |m: &SipMessage| {
                    hdr_eq(m, "To", "\"%Z%45\" <sip:resource@example.com>")?;
                    hdr_eq(m, "C%6Fntact", "<sip:alias2@host2.example.com>")?;
                    contacts_eq(m, &["<sip:alias1@host1.example.com>", "<sip:alias3@host3.example.com>"])
                },
            ),
        ),
        case(
            "3.1.1.6 lwsdisp",
            |c: &Ctx| sip(c, LWSDISP),
            relay("OPTIONS", "lwsdisp.1234abcd@funky.example.com", 60, 0).bob(|m: &SipMessage| {
                let from = name_addr(m, "From")?;
                let display = from.display.as_deref().map(|d| d.trim_matches('"'));
                if display != Some("caller") || from.uri != "sip:caller@example.com" {
                    return Err(format!("From read as {:?}", m.header("From")));
                }
                Ok(())
            }),
        ),
        case(
            "3.1.1.7 longreq",
            longreq,
            relay("INVITE", LONGREQ_CALL_ID, 3882340, 150).bob(|m: &SipMessage| {
                hdr_eq(m, LONG_HEADER_NAME, LONG_HEADER_VALUE)?;
                let to = name_addr(m, "To")?;
                if to.display.as_deref().map(|d| d.trim_matches('"')) != Some(LONG_TO_DISPLAY) {
                    return Err(format!("To display name read as {:?}", to.display));
                }
                Ok(())
            }),
        ),
        // UDP: the octets after the REGISTER's body are noise (RFC 3261
        // §18.3), never an INVITE. TCP: a stream has no datagram end, so
        // they are the next message, relayed in its own right.
        case(
            "3.1.1.8 dblreq",
            dblreq,
            relay("REGISTER", "dblreq.0ha0isndaksdj99sdfafnl3lk233412", 8, 0),
        )
        .over_tcp(relay("REGISTER", "dblreq.0ha0isndaksdj99sdfafnl3lk233412", 8, 0).more()),
        case(
            "3.1.1.9 semiuri",
            |c: &Ctx| sip(c, SEMIURI),
            relay("OPTIONS", "semiuri.0ha0isndaksdj", 8, 0).bob(|m: &SipMessage| {
                ruri_eq(m, "sip:user;par=u%40example.net@example.com")?;
                let accept = m.header_values("Accept");
                let want = [
                    "application/sdp",
                    "application/pkcs7-mime",
                    "multipart/mixed",
                    "multipart/signed",
                    "message/sip",
                    "message/sipfrag",
                ];
                if accept.iter().map(|a| a.trim()).ne(want) {
                    return Err(format!("Accept read as {accept:?}"));
                }
                Ok(())
            }),
        ),
        // Unknown transports further down the Via stack are only carried
        // back: alice's answer lists all five, in order.
        case(
            "3.1.1.10 transports",
            |c: &Ctx| sip(c, TRANSPORTS),
            relay("OPTIONS", "transports.kijh4akdnaqjkwendsasfdj", 60, 0).alice(|r: &SipMessage| {
                let t: Vec<String> = r
                    .header_values("Via")
                    .iter()
                    .map(|v| Via::parse(v).map(|v| v.transport).unwrap_or_default())
                    .collect();
                if t.len() != 5 || t[1..] != ["SCTP", "TLS", "UNKNOWN", "TCP"] {
                    return Err(format!("answer's Via transports {t:?}"));
                }
                Ok(())
            }),
        ),
        case(
            "3.1.1.11 mpart01",
            mpart01,
            relay("MESSAGE", "3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..", 1, MPART_LEN).bob(
                |m: &SipMessage| {
                    hdr_eq(m, "Content-Type", "multipart/mixed;boundary=7a9cbec02ceef655")?;
                    if m.body[..] != mpart_body()[..] {
                        return Err("binary body changed".into());
                    }
                    Ok(())
                },
            ),
        ),
        // Responses matching no transaction of the host's: dropped (RFC
        // 3261 §17.1.3, §18.1.2), never answered, never passed to the core.
        case("3.1.1.12 unreason", |c: &Ctx| sip(c, UNREASON), SILENT),
        case("3.1.1.13 noreason", |c: &Ctx| sip(c, NOREASON), SILENT),
        // ---- 3.1.2 invalid messages ----
        case("3.1.2.1 badinv01", badinv01, refused(400)),
        // TCP: the body may still come; waiting (and closing later) is all
        // a stream allows (RFC 4475 §3.1.2.2).
        case("3.1.2.2 clerr", clerr, refused(400)).over_tcp(SILENT),
        case("3.1.2.3 ncl", ncl, refused(400)),
        case("3.1.2.4 scalar02", scalar02, refused(400)),
        // A malformed response: discarded.
        case("3.1.2.5 scalarlg", |c: &Ctx| sip(c, SCALARLG), SILENT),
        case("3.1.2.6 quotbal", quotbal, refused(400)),
        case("3.1.2.7 ltgtruri", ltgtruri, refused(400)),
        case("3.1.2.8 lwsruri", lwsruri, refused(400)),
        case("3.1.2.9 lwsstart", lwsstart, refused(400)),
        case("3.1.2.10 trws", |c: &Ctx| sip(c, TRWS), refused(400)),
        case("3.1.2.11 escruri", escruri, refused(400)),
        // Date is nothing the host acts on; RFC 4475 says not to reject for it.
        case(
            "3.1.2.12 baddate",
            baddate,
            relay("INVITE", "baddate.239423mnsadf3j23lj42--sedfnm234", 1392934, 150),
        ),
        case("3.1.2.13 regbadct", |c: &Ctx| sip(c, REGBADCT), refused(400)),
        case("3.1.2.14 badaspec", |c: &Ctx| sip(c, BADASPEC), refused(400)),
        case("3.1.2.15 baddn", |c: &Ctx| sip(c, BADDN), refused(400)),
        case("3.1.2.16 badvers", |c: &Ctx| sip(c, BADVERS), refused(505)),
        case("3.1.2.17 mismatch01", |c: &Ctx| sip(c, MISMATCH01), refused(400)),
        // RFC 4475: 501 preferred, 400 acceptable.
        case(
            "3.1.2.18 mismatch02",
            |c: &Ctx| sip(c, MISMATCH02),
            Expect::Refused(&[501, 400], None),
        ),
        case("3.1.2.19 bigcode", |c: &Ctx| sip(c, BIGCODE), SILENT),
        // ---- 3.2 transaction layer ----
        // A bare magic cookie identifies no transaction; RFC 4475 prefers a
        // stateless 400 to guessing one.
        case("3.2.1 badbranch", |c: &Ctx| sip(c, BADBRANCH), refused(400)),
        // ---- 3.3 application layer ----
        case("3.3.1 insuf", insuf, refused(400)),
        case("3.3.2 unkscm", |c: &Ctx| sip(c, UNKSCM), refused(416)),
        // The host routes only sip, sips and tel: any other scheme is unknown to it.
        case("3.3.3 novelsc", |c: &Ctx| sip(c, NOVELSC), refused(416)),
        // The AOR rule is the registrar's (the core's); relayed as proxies
        // treat it, the URIs unchanged.
        case(
            "3.3.4 unksm2",
            |c: &Ctx| sip(c, UNKSM2),
            relay("REGISTER", "unksm2.daksdj@hyphenated-host.example.com", 234902, 0).bob(
                |m: &SipMessage| {
                    hdr_eq(m, "To", "isbn:2983792873")?;
                    contacts_eq(m, &["<name:John_Smith>"])
                },
            ),
        ),
        // The host is the UAS of leg A: an unknown Require option is 420
        // listing it in Unsupported (RFC 3261 §8.2.2.3).
        case(
            "3.3.5 bext01",
            |c: &Ctx| sip(c, BEXT01),
            refused_with(&[420], |r: &SipMessage| {
                unsupported_lists(r, &["nothingSupportsThis", "nothingSupportsThisEither"])
            }),
        ),
        // The body is the core's to accept or refuse (415); the host passes it on.
        case(
            "3.3.6 invut",
            |c: &Ctx| sip(c, INVUT),
            relay("INVITE", "invut.0ha0isndaksdjadsfij34n23d", 235448, 40).bob(|m: &SipMessage| {
                hdr_eq(m, "Content-Type", "application/unknownformat")
            }),
        ),
        // Credentials are the registrar's: relayed unmodified (RFC 4475 §3.3.7).
        case(
            "3.3.7 regaut01",
            |c: &Ctx| sip(c, REGAUT01),
            relay("REGISTER", "regaut01.0ha0isndaksdj", 9338, 0).bob(|m: &SipMessage| {
                hdr_eq(m, "Authorization", "NoOneKnowsThisScheme opaque-data=here")
            }),
        ),
        case("3.3.8 multi01", multi01, refused(400)),
        case("3.3.9 mcl01", |c: &Ctx| sip(c, MCL01), refused(400)),
        // A response with a broadcast Via: dropped, never forwarded.
        case("3.3.10 bcast", bcast, SILENT),
        // A B2BUA relaying to the core keeps loop protection: Max-Forwards 0
        // is not forwarded, 483 (RFC 3261 §16.6 step 3 via RFC 7332).
        case("3.3.11 zeromf", |c: &Ctx| sip(c, ZEROMF), refused(483)),
        // Without brackets `unknownparam` is a contact-param; it must stay
        // one (outside any brackets a relay adds).
        case(
            "3.3.12 cparam01",
            |c: &Ctx| sip(c, CPARAM01),
            relay("REGISTER", "cparam01.70710@saturn.example.com", 2, 0).bob(|m: &SipMessage| {
                let got = m.header_values("Contact");
                let ok = [
                    "sip:+19725552222@gw1.example.net;unknownparam",
                    "<sip:+19725552222@gw1.example.net>;unknownparam",
                ];
                if got.len() != 1 || !ok.contains(&got[0]) {
                    return Err(format!("Contact read as {got:?}"));
                }
                Ok(())
            }),
        ),
        case(
            "3.3.13 cparam02",
            |c: &Ctx| sip(c, CPARAM02),
            relay("REGISTER", "cparam02.70710@saturn.example.com", 3, 0).bob(|m: &SipMessage| {
                contacts_eq(m, &["<sip:+19725552222@gw1.example.net;unknownparam>"])
            }),
        ),
        case(
            "3.3.14 regescrt",
            |c: &Ctx| sip(c, REGESCRT),
            relay("REGISTER", "regescrt.k345asrl3fdbv@192.0.2.1", 14398234, 0).bob(
                |m: &SipMessage| {
                    contacts_eq(m, &["<sip:user@example.com?Route=%3Csip:sip.example.com%3E>"])
                },
            ),
        ),
        // Accept constrains the UAS's (the core's) answer: passed on as is.
        case(
            "3.3.15 sdp01",
            sdp01,
            relay("INVITE", "sdp01.ndaksdj9342dasdd", 8, 150)
                .bob(|m: &SipMessage| hdr_eq(m, "Accept", "text/nobodyKnowsThis")),
        ),
        // ---- 3.4 backward compatibility ----
        // UDP: accepted as RFC 2543 (no branch, From tag, Max-Forwards or
        // Content-Length; RFC 3261 §17.2.3 matching). TCP: a stream message
        // must carry Content-Length (RFC 3261 §18.3, §20.14): 400.
        case(
            "3.4.1 inv2543",
            |c: &Ctx| sip(c, INV2543),
            relay("INVITE", "inv2543.1717@ift.client.example.com", 56, 105),
        )
        .over_tcp(refused(400)),
        // ---- our own ----
        case("issue: folded ` l: 0` smuggles an INVITE", smuggle, refused(400)),
        case(
            "issue: bare CR inside a header value",
            |c: &Ctx| options_with(c, "X-A: ok$CRInjected: yes\n"),
            refused(400),
        ),
        case(
            "issue: bare CR inside the Request-URI",
            |c: &Ctx| {
                let b = options_with(c, "");
                replace_bytes(b, b"sip:bob@example.com SIP", b"sip:bob@exam\rple.com SIP")
            },
            refused(400),
        ),
        case(
            "issue: bare LF inside a header value",
            |c: &Ctx| options_with(c, "X-A: ok$LFInjected: yes\n"),
            refused(400),
        ),
        case("issue: NUL in a value", |c: &Ctx| options_with(c, "X-A: a$NULb\n"), refused(400)),
        case("issue: ESC in a value", |c: &Ctx| options_with(c, "X-A: a$ESCb\n"), refused(400)),
        case("issue: BEL in a value", |c: &Ctx| options_with(c, "X-A: a$BELb\n"), refused(400)),
        case("issue: DEL in a value", |c: &Ctx| options_with(c, "X-A: a$DELb\n"), refused(400)),
        // Answered, not a closed connection.
        case(
            "issue: non-UTF-8 byte in the From display name",
            |c: &Ctx| {
                let b = options_with(c, "");
                replace_bytes(
                    b,
                    b"From: <sip:alice@example.com>",
                    b"From: \"Al\xffice\" <sip:alice@example.com>",
                )
            },
            refused(400),
        ),
        case("issue: more headers than the limit (256)", many_headers, refused(400)),
        case("issue: oversized message", oversized, refused(513)),
        // The problem text quotes the input back; the Warning must stay one
        // well-formed quoted string (checked on every 400; here it must be there).
        case(
            "issue: 400 Warning quoting input with '\"' and '\\'",
            |c: &Ctx| options_with(c, "Bogus \"quoted\\\" line without a colon\n"),
            refused_with(&[400], |r: &SipMessage| {
                if r.header("Warning").is_none() {
                    return Err("no Warning".into());
                }
                Ok(())
            }),
        ),
        // ---- further RFC 3261 rules named in the brief ----
        case("extra: Contact * on an INVITE", |c: &Ctx| sip(c, INVITE_STAR), refused(400)),
        case(
            "extra: unterminated IPv6 reference in the Request-URI",
            |c: &Ctx| {
                let b = options_with(c, "");
                replace_bytes(b, b"OPTIONS sip:bob@example.com", b"OPTIONS sip:[2001:db8::10")
            },
            refused(400),
        ),
        case(
            "extra: Content-Length +3",
            |c: &Ctx| {
                let b = options_with(c, "");
                let mut b = replace_bytes(b, b"Content-Length: 0", b"Content-Length: +3");
                b.extend_from_slice(b"abc");
                b
            },
            refused(400),
        ),
        case("extra: two Call-IDs", |c: &Ctx| duplicate(c, "Call-ID"), refused(400)),
        case("extra: two CSeqs", |c: &Ctx| duplicate(c, "CSeq"), refused(400)),
        case("extra: two Froms", |c: &Ctx| duplicate(c, "From"), refused(400)),
        case(
            "extra: INVITE with an unknown Require",
            |c: &Ctx| sip(c, INVITE_REQUIRE),
            refused_with(&[420], |r: &SipMessage| unsupported_lists(r, &["nothingSupportsThis"])),
        ),
        // An ACK is never answered, malformed or not.
        case("extra: malformed ACK (bare CR)", |c: &Ctx| sip(c, ACK_BARE_CR), SILENT),
    ]
}

// ---------------------------------------------------------------------------
// Running a case
// ---------------------------------------------------------------------------

/// What the host did with a message, first thing seen.
enum Got {
    /// A final (or non-100) response to alice.
    Answer(SipMessage),
    /// A request at bob, and the host address it came from.
    Relay(SipMessage, SocketAddr),
    Nothing,
    Broken(String),
}

fn describe(g: &Got) -> String {
    match g {
        Got::Answer(r) => match r.header("Warning") {
            Some(w) => format!("got {} (Warning: {w})", r.status().unwrap_or(0)),
            None => format!("got {}", r.status().unwrap_or(0)),
        },
        Got::Relay(m, _) => format!("relayed to bob as {}", m.summary()),
        Got::Nothing => "silent".into(),
        Got::Broken(s) => s.clone(),
    }
}

async fn first_event(rig: &mut Rig, wait: Duration) -> Got {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        tokio::select! {
            a = rig.alice.recv_within(left) => match a {
                Ok((m, _)) if m.status() == Some(100) => continue,
                Ok((m, _)) if m.is_request() => {
                    return Got::Broken(format!("alice got a request: {}", m.summary()))
                }
                Ok((m, _)) => return Got::Answer(m),
                Err(UaError::Timeout(..)) => return Got::Nothing,
                Err(e) => return Got::Broken(format!("alice: {e}")),
            },
            b = rig.bob.recv_within(left) => match b {
                Ok((m, from)) if m.is_request() => return Got::Relay(m, from),
                Ok((m, _)) => return Got::Broken(format!("bob got a response: {}", m.summary())),
                Err(UaError::Timeout(..)) => return Got::Nothing,
                Err(e) => return Got::Broken(format!("bob could not read what came: {e}")),
            },
        }
    }
}

/// The Request-URI of the first line of `bytes` when it is an INVITE.
fn invite_uri(bytes: &[u8]) -> Option<String> {
    let line = bytes.split(|&b| b == b'\n').next()?;
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    (parts.next()? == "INVITE").then(|| parts.next().map(str::to_string))?
}

/// ACK a final non-2xx response to an INVITE (RFC 3261 §17.1.1.3), so no
/// transaction of the host's waits on alice.
fn ack_if_invite(alice: &TestUa, host: SocketAddr, r: &SipMessage, sent: &[u8]) {
    let (Some(status), Some((n, method))) = (r.status(), r.cseq()) else {
        return;
    };
    if method != "INVITE" || status < 200 {
        return;
    }
    let to = r.header("To").unwrap_or_default();
    let uri = invite_uri(sent)
        .or_else(|| NameAddr::parse(to).map(|n| n.uri))
        .unwrap_or_default();
    let via = r.header_values("Via").first().copied().unwrap_or_default();
    let ack = format!(
        "ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {n} ACK\r\nContent-Length: 0\r\n\r\n",
        r.header("From").unwrap_or_default(),
        r.call_id().unwrap_or_default(),
    );
    alice.send_raw(host, ack.as_bytes());
}

/// Bob's final answer to a request: 486 to an INVITE, 200 to the rest.
fn bob_answers(rig: &Rig, m: &SipMessage, from: SocketAddr) {
    if m.method() == Some("ACK") {
        return;
    }
    let status = if m.method() == Some("INVITE") {
        486
    } else {
        200
    };
    rig.bob
        .send(from, &rig.bob.reply(m, status, "torture", None));
}

/// Answer whatever is still in flight (bob: 486 to an INVITE, 200 to the
/// rest; alice: ACK final answers to INVITEs) until both sides are quiet.
async fn settle(rig: &mut Rig, sent: &[u8]) {
    let quiet = Duration::from_millis(300);
    let until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < until {
        tokio::select! {
            a = rig.alice.recv_within(quiet) => match a {
                Ok((r, _)) if !r.is_request() => ack_if_invite(&rig.alice, rig.host_for_alice, &r, sent),
                Ok(_) => {}
                Err(_) => return,
            },
            b = rig.bob.recv_within(quiet) => match b {
                Ok((m, from)) if m.is_request() => bob_answers(rig, &m, from),
                Ok(_) => {}
                Err(_) => return,
            },
        }
    }
}

/// The final answer alice gets to her `method` request (100s skipped;
/// answers to another request on the same stream are ACKed and passed
/// over). A final answer to an INVITE is ACKed.
async fn final_answer(
    rig: &mut Rig,
    sent: &[u8],
    method: &str,
    wait: Duration,
) -> Result<SipMessage, String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match rig.alice.recv_within(left).await {
            Ok((m, _)) if m.is_request() || m.status().is_some_and(|s| s < 200) => continue,
            Ok((m, _)) => {
                ack_if_invite(&rig.alice, rig.host_for_alice, &m, sent);
                if m.cseq().is_some_and(|(_, x)| x != method) {
                    continue;
                }
                return Ok(m);
            }
            Err(e) => return Err(format!("no answer relayed back to alice ({e})")),
        }
    }
}

async fn check_relayed(
    rig: &mut Rig,
    ctx: &Ctx,
    sent: &[u8],
    rel: Relay,
    m: SipMessage,
    from: SocketAddr,
) -> Result<(), String> {
    let mut errs: Vec<String> = Vec::new();
    let invite = rel.method == "INVITE";
    if m.method() != Some(rel.method) {
        errs.push(format!(
            "bob got method {:?}, want {:?}",
            m.method(),
            rel.method
        ));
    }
    match m.cseq() {
        Some((n, method)) => {
            if method != rel.method {
                errs.push(format!("bob's CSeq method {method:?}"));
            }
            // A non-INVITE outside a dialog is relayed as one transaction
            // carrying the client's CSeq (an INVITE starts leg B's own count).
            if !invite && n != rel.cseq {
                errs.push(format!("bob's CSeq number {n}, want {}", rel.cseq));
            }
        }
        None => errs.push(format!("bob's CSeq unreadable: {:?}", m.header("CSeq"))),
    }
    if m.body.len() != rel.body {
        errs.push(format!(
            "bob's body is {} bytes, want {}",
            m.body.len(),
            rel.body
        ));
    }
    if let Some(check) = rel.at_bob {
        if let Err(e) = check(&m) {
            errs.push(format!("at bob: {e}"));
        }
    }
    // Bob answers; alice must get it back on her own Call-ID and CSeq.
    let status = if m.method() == Some("INVITE") {
        486
    } else {
        200
    };
    bob_answers(rig, &m, from);
    match final_answer(rig, sent, rel.method, Duration::from_secs(3)).await {
        Ok(r) => {
            let want_cid = format!("{}{}", ctx.cid, rel.call_id);
            if r.status() != Some(status) {
                errs.push(format!("alice got {:?} back, want {status}", r.status()));
            }
            if r.call_id() != Some(want_cid.as_str()) {
                errs.push(format!(
                    "answer's Call-ID {:?}, want {want_cid:?}",
                    r.call_id()
                ));
            }
            if r.cseq() != Some((rel.cseq, rel.method.to_string())) {
                errs.push(format!("answer's CSeq {:?}", r.header("CSeq")));
            }
            if let Some(check) = rel.at_alice {
                if let Err(e) = check(&r) {
                    errs.push(format!("at alice: {e}"));
                }
            }
        }
        Err(e) => errs.push(e),
    }
    if !rel.more {
        // Nothing else reaches bob (the hop-by-hop ACK of a 486 aside).
        let until = tokio::time::Instant::now() + Duration::from_millis(300);
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            match rig.bob.recv_within(left).await {
                Ok((x, _)) if invite && x.method() == Some("ACK") => continue,
                Ok((x, from)) => {
                    errs.push(format!("bob also got {}", x.summary()));
                    bob_answers(rig, &x, from);
                    break;
                }
                Err(_) => break,
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("relayed, but {}", errs.join("; ")))
    }
}

async fn run_case(rig: &mut Rig, proto: Proto, n: usize, case: &Case) -> Result<(), String> {
    // A fresh alice per case: a new socket, and over TCP a new connection,
    // so one case's leftovers (a half-read body, a closed stream) are not
    // the next one's.
    rig.alice = TestUa::bind("alice", proto, loopback(), rig.ladder.clone())
        .await
        .map_err(|e| format!("bind alice: {e}"))?;
    let ctx = Ctx {
        via: host_port(rig.alice.addr()),
        t: proto.via_name(),
        cid: format!("{proto}{n}-"),
    };
    let sent = (case.msg)(&ctx);
    let expect = match proto {
        Proto::Udp => case.udp,
        Proto::Tcp => case.tcp,
    };
    rig.alice.send_raw(rig.host_for_alice, &sent);
    let wait = match expect {
        Expect::Silent => Duration::from_millis(500),
        _ => Duration::from_secs(3),
    };
    let mut got = first_event(rig, wait).await;
    if let Expect::Relayed(Relay {
        more: true, method, ..
    }) = expect
    {
        // The other message(s) of the stream may be handled first (another
        // Call-ID, another shard): answered and passed over.
        for _ in 0..4 {
            match &got {
                Got::Relay(m, from) if m.method() != Some(method) => bob_answers(rig, m, *from),
                Got::Answer(r) if r.cseq().is_some_and(|(_, x)| x != method) => {
                    ack_if_invite(&rig.alice, rig.host_for_alice, r, &sent)
                }
                _ => break,
            }
            got = first_event(rig, wait).await;
        }
    }
    if std::env::var_os("TORTURE_TRACE").is_some() {
        eprintln!("[{proto}] {} -> {}", case.name, describe(&got));
    }
    match (&got, expect) {
        (Got::Answer(r), _) => ack_if_invite(&rig.alice, rig.host_for_alice, r, &sent),
        // Relayed when it should not have been: bob still answers it, or the
        // host's retransmissions would reach bob during the next cases.
        (Got::Relay(m, from), Expect::Refused(..) | Expect::Silent) => bob_answers(rig, m, *from),
        _ => {}
    }
    let outcome = match (expect, got) {
        (Expect::Silent, Got::Nothing) => Ok(()),
        (Expect::Silent, got) => Err(format!("expected silence, {}", describe(&got))),
        (Expect::Refused(statuses, check), Got::Answer(r))
            if r.status().is_some_and(|s| statuses.contains(&s)) =>
        {
            let mut errs = Vec::new();
            if let Err(e) = warnings_well_formed(&r) {
                errs.push(e);
            }
            if let Some(check) = check {
                if let Err(e) = check(&r) {
                    errs.push(e);
                }
            }
            if let Ok((m, from)) = rig.bob.recv_within(Duration::from_millis(200)).await {
                errs.push(format!("but bob got {}", m.summary()));
                bob_answers(rig, &m, from);
            }
            if errs.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "got {}, {}",
                    r.status().unwrap_or(0),
                    errs.join("; ")
                ))
            }
        }
        (Expect::Refused(statuses, _), got) => {
            let want: Vec<String> = statuses.iter().map(u16::to_string).collect();
            Err(format!(
                "expected {}, {}",
                want.join(" or "),
                describe(&got)
            ))
        }
        (Expect::Relayed(rel), Got::Relay(m, from)) => {
            check_relayed(rig, &ctx, &sent, rel, m, from).await
        }
        (Expect::Relayed(rel), got) => Err(format!(
            "expected relayed {}, {}",
            rel.method,
            describe(&got)
        )),
    };
    settle(rig, &sent).await;
    outcome
}

const OPTIONS: &str = "OPTIONS sip:bob@example.com SIP/2.0
Via: SIP/2.0/$T $VIA;branch=z9hG4bKstill
Max-Forwards: 70
From: <sip:alice@example.com>;tag=s1
To: <sip:bob@example.com>
Call-ID: $CIDstill-serving@example.com
CSeq: 1 OPTIONS
Content-Length: 0

";

async fn run_table(proto: Proto) {
    let mut rig = Rig::with(proto, proto, loopback(), |c| {
        // Small enough that an oversized message still fits in a datagram.
        c.limits.max_message_bytes = 16 * 1024;
        // No overload shedding on a shared, niced test machine: a 503 for
        // waiting is not what these cases are about.
        c.limits.shed_after_ms = 0;
    })
    .await;
    let mut failures = Vec::new();
    let table = cases();
    for (n, case) in table.iter().enumerate() {
        if let Err(e) = run_case(&mut rig, proto, n, case).await {
            failures.push(format!("[{proto}] {}: {e}", case.name));
        }
    }

    // Still serving: a plain OPTIONS is relayed and answered.
    let still = async {
        rig.alice = TestUa::bind("alice", proto, loopback(), rig.ladder.clone())
            .await
            .map_err(|e| e.to_string())?;
        let ctx = Ctx {
            via: host_port(rig.alice.addr()),
            t: proto.via_name(),
            cid: format!("{proto}-"),
        };
        rig.alice.send_raw(rig.host_for_alice, &sip(&ctx, OPTIONS));
        let (m, from) = rig
            .bob
            .expect_request("OPTIONS")
            .await
            .map_err(|e| e.to_string())?;
        rig.bob.send(from, &rig.bob.reply(&m, 200, "b", None));
        rig.alice
            .expect_response(200)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    if let Err(e) = still.await {
        failures.push(format!(
            "[{proto}] after the table: a plain OPTIONS is not served: {e}"
        ));
    }
    if !rig.wait_calls(0).await {
        failures.push(format!(
            "[{proto}] after the table: {} calls still active",
            rig.host.stats.calls()
        ));
    }
    assert!(
        failures.is_empty(),
        "{} of {} RFC 4475 cases fail over {proto}:\n{}",
        failures.len(),
        table.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn rfc4475_torture_over_udp() {
    run_table(Proto::Udp).await;
}

#[tokio::test]
async fn rfc4475_torture_over_tcp() {
    run_table(Proto::Tcp).await;
}
