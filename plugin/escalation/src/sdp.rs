//! The MSRP offer a conference INVITE carries (RFC 4975): checked with sdp-rs.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SdpError {
    #[error("no SDP offer available")]
    Missing,
    #[error("SDP does not parse: {0}")]
    Invalid(String),
    #[error("no MSRP media line (m=message ... TCP/MSRP)")]
    NoMsrp,
    #[error("the MSRP media has no a=path")]
    NoPath,
}

/// What the conference needs from the client's offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsrpOffer {
    pub path: String,
    pub accept_types: Option<String>,
}

pub fn check_msrp_offer(sdp: &[u8]) -> Result<MsrpOffer, SdpError> {
    if sdp.is_empty() {
        return Err(SdpError::Missing);
    }
    let text =
        String::from_utf8(sdp.to_vec()).map_err(|_| SdpError::Invalid("not UTF-8".into()))?;
    let parsed = sdp_rs::SessionDescription::try_from(text)
        .map_err(|e| SdpError::Invalid(format!("{e:?}")))?;
    let media = parsed
        .media_descriptions
        .iter()
        .find(|m| {
            let proto = format!("{:?}", m.media.proto).to_ascii_uppercase();
            format!("{:?}", m.media.media).eq_ignore_ascii_case("message") && proto.contains("MSRP")
        })
        .ok_or(SdpError::NoMsrp)?;
    let attr = |name: &str| {
        media.attributes.iter().find_map(|a| match a {
            sdp_rs::lines::Attribute::Other(k, v) if k.eq_ignore_ascii_case(name) => v.clone(),
            _ => None,
        })
    };
    Ok(MsrpOffer {
        path: attr("path").ok_or(SdpError::NoPath)?,
        accept_types: attr("accept-types"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=message 7654 TCP/MSRP *\r\na=accept-types:message/cpim text/plain\r\na=path:msrp://192.0.2.1:7654/jshA7we;tcp\r\n";

    #[test]
    fn finds_the_path_of_an_msrp_offer() {
        let o = check_msrp_offer(OFFER.as_bytes()).unwrap();
        assert_eq!(o.path, "msrp://192.0.2.1:7654/jshA7we;tcp");
        assert_eq!(o.accept_types.as_deref(), Some("message/cpim text/plain"));
    }

    #[test]
    fn refuses_what_is_not_an_msrp_offer() {
        assert_eq!(check_msrp_offer(b""), Err(SdpError::Missing));
        let audio = OFFER.replace("m=message 7654 TCP/MSRP *", "m=audio 4000 RTP/AVP 0");
        assert_eq!(check_msrp_offer(audio.as_bytes()), Err(SdpError::NoMsrp));
        let no_path = OFFER.replace("a=path:msrp://192.0.2.1:7654/jshA7we;tcp\r\n", "");
        assert_eq!(check_msrp_offer(no_path.as_bytes()), Err(SdpError::NoPath));
        assert!(matches!(
            check_msrp_offer(b"garbage"),
            Err(SdpError::Invalid(_))
        ));
    }
}
