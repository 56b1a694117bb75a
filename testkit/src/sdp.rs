//! MSRP session descriptions for test calls: alice's offer and bob's answer
//! in a 1-to-1 chat.

/// alice's offer: one MSRP chat session.
pub const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 7654 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\na=path:msrp://127.0.0.1:7654/a1b2;tcp\r\n";
/// bob's answer to [`OFFER`].
pub const ANSWER: &str = "v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 7655 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\na=path:msrp://127.0.0.1:7655/b1c2;tcp\r\n";
/// alice's fresh offer, in her 200 to the host's offerless re-INVITE
/// (RFC 3725 flow I) when she is escalated.
pub const FRESH_OFFER: &str = "v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 7654 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\na=path:msrp://127.0.0.1:7654/fresh-a1;tcp\r\n";
/// The conference focus's answer.
pub const CONFERENCE: &str = "v=0\r\no=focus 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 9000 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\na=path:msrp://127.0.0.1:9000/conf-9;tcp\r\n";
