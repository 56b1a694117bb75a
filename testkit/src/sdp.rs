//! MSRP session descriptions for test calls: alice's offer and bob's answer
//! in a 1-to-1 chat.

/// alice's offer: one MSRP chat session.
pub const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 7654 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\na=path:msrp://127.0.0.1:7654/a1b2;tcp\r\n";
/// bob's answer to [`OFFER`].
pub const ANSWER: &str = "v=0\r\no=bob 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=message 7655 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\na=path:msrp://127.0.0.1:7655/b1c2;tcp\r\n";
