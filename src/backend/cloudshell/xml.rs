//! The XML of the CloudShell Automation API, as the official Python client
//! writes and reads it (reference/cloudshell-api.md §2, §3, captures/).
//!
//! Requests are written by hand: the root is the method name, one child per
//! parameter in documented order, no declaration, no namespace. Replies are
//! read with a real parser into a small tree and looked up by *local* names,
//! because the server puts everything in a default namespace and prefixes
//! are not fixed.

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

/// XML-escape text for an element body: `&`, `<` and `>`, as the official
/// client does (`xml.sax.saxutils.escape`).
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

/// The API refuses ASCII 0–31 other than tab, LF and CR, and XML 1.0
/// cannot carry them at all: such input is rejected before it is sent.
pub(super) fn has_forbidden_chars(text: &str) -> bool {
    text.chars()
        .any(|c| (c as u32) < 32 && !matches!(c, '\t' | '\n' | '\r'))
}

fn element(name: &str, text: &str) -> String {
    format!("<{name}>{}</{name}>", escape(text))
}

pub(super) fn logon(username: &str, password: &str, domain: &str) -> String {
    format!(
        "<Logon>{}{}{}</Logon>",
        element("username", username),
        element("password", password),
        element("domainName", domain)
    )
}

pub(super) fn secure_logon(token: &str, domain: &str) -> String {
    format!(
        "<SecureLogon>{}{}</SecureLogon>",
        element("token", token),
        element("domainName", domain)
    )
}

/// `AddServiceToReservation(reservationId, serviceName, alias, attributes)`.
/// Attribute fields go out in the client's sorted order: `Name`, `Value`.
pub(super) fn add_service(
    reservation: &str,
    model: &str,
    alias: &str,
    attributes: &[(String, String)],
) -> String {
    let attributes = if attributes.is_empty() {
        "<attributes />".to_owned()
    } else {
        let items: String = attributes
            .iter()
            .map(|(name, value)| {
                format!(
                    "<AttributeNameValue>{}{}</AttributeNameValue>",
                    element("Name", name),
                    element("Value", value)
                )
            })
            .collect();
        format!("<attributes>{items}</attributes>")
    };
    format!(
        "<AddServiceToReservation>{}{}{}{attributes}</AddServiceToReservation>",
        element("reservationId", reservation),
        element("serviceName", model),
        element("alias", alias)
    )
}

pub(super) fn remove_services(reservation: &str, aliases: &[&str]) -> String {
    let items: String = aliases
        .iter()
        .map(|alias| element("string", alias))
        .collect();
    format!(
        "<RemoveServicesFromReservation>{}<services>{items}</services></RemoveServicesFromReservation>",
        element("reservationId", reservation)
    )
}

/// `disableCache` is always true: the server otherwise answers from a
/// 5-second cache, and a stale answer about who holds a lock is worse
/// than a slower one.
pub(super) fn reservation_details(reservation: &str) -> String {
    format!(
        "<GetReservationDetails>{}<disableCache>true</disableCache></GetReservationDetails>",
        element("reservationId", reservation)
    )
}

/// One element of a parsed reply, by local names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Element {
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    pub(super) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub(super) fn children_named<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub(super) fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// First element with this local name at any depth (self included).
    pub(super) fn find(&self, name: &str) -> Option<&Element> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }
}

/// Parse a whole document into a tree. `&#x0;` (which servers emit and XML
/// 1.0 forbids) is replaced first, as the official client does, so that one
/// NUL in a description does not make a lock reply unreadable.
pub(super) fn parse(document: &str) -> Result<Element, String> {
    let cleaned = document
        .replace("&#x0;", "&lt;NUL&gt;")
        .replace("&#0;", "&lt;NUL&gt;");
    let mut reader = Reader::from_str(&cleaned);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| format!("malformed XML near byte {position}: {e}"))?;
        match event {
            Event::Start(start) => stack.push(open(&start)?),
            Event::Empty(start) => close(&mut stack, &mut root, open(&start)?)?,
            Event::End(_) => {
                let done = stack.pop().ok_or("unbalanced end tag")?;
                close(&mut stack, &mut root, done)?;
            }
            Event::Text(text) => {
                let content = text.xml10_content();
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&content),
                    None if content.trim().is_empty() => {}
                    None => return Err("text outside the root element: not an API reply".into()),
                }
            }
            Event::CData(data) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&data.xml10_content());
                }
            }
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => quick_xml::escape::resolve_predefined_entity(&reference)
                        .ok_or_else(|| format!("unknown entity &{};", &*reference))?
                        .to_owned(),
                    Err(e) => return Err(format!("bad character reference: {e}")),
                };
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&resolved),
                    None => return Err("entity outside the root element".into()),
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("truncated XML document".into());
    }
    root.ok_or_else(|| "empty reply: no XML element".into())
}

fn open(start: &BytesStart<'_>) -> Result<Element, String> {
    let mut element = Element {
        name: start.local_name().into_inner().to_owned(),
        ..Element::default()
    };
    for attribute in start.attributes() {
        let attribute = attribute.map_err(|e| format!("malformed attribute: {e}"))?;
        let value = attribute
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| format!("malformed attribute value: {e}"))?;
        element.attributes.push((
            attribute.key.local_name().into_inner().to_owned(),
            value.into_owned(),
        ));
    }
    Ok(element)
}

fn close(stack: &mut [Element], root: &mut Option<Element>, done: Element) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(done),
        None if root.is_none() => *root = Some(done),
        None => return Err("more than one root element".into()),
    }
    Ok(())
}

/// The `<Response>` envelope every method answers with.
#[derive(Debug)]
pub(super) struct Envelope {
    pub success: bool,
    pub error_code: String,
    pub error: String,
    pub root: Element,
}

impl Envelope {
    pub(super) fn parse(document: &str) -> Result<Envelope, String> {
        let root = parse(document)?;
        if root.name != "Response" {
            return Err(format!(
                "expected a <Response> element, got <{}>",
                root.name
            ));
        }
        let success = root
            .attribute("Success")
            .ok_or("<Response> has no Success attribute")?;
        // The official client accepts these spellings, case-insensitively.
        let success = ["true", "yes", "on"].contains(&success.trim().to_ascii_lowercase().as_str());
        let text_of = |name: &str| {
            root.child(name)
                .map(|e| e.text.trim().to_owned())
                .unwrap_or_default()
        };
        Ok(Envelope {
            success,
            error_code: text_of("ErrorCode"),
            error: text_of("Error"),
            root,
        })
    }

    pub(super) fn response_info(&self) -> Option<&Element> {
        self.root.child("ResponseInfo")
    }

    /// `ResponseInfo/Token/@Token` of a Logon or SecureLogon reply.
    pub(super) fn logon_token(&self) -> Option<String> {
        self.response_info()?
            .child("Token")?
            .attribute("Token")
            .map(str::to_owned)
            .filter(|t| !t.is_empty())
    }

    /// The services of a GetReservationDetails reply:
    /// `ResponseInfo/ReservationDescription/Services/Service`.
    pub(super) fn services(&self) -> Result<Vec<Service>, String> {
        let description = self
            .response_info()
            .and_then(|info| info.find("ReservationDescription"))
            .ok_or("GetReservationDetails reply has no ReservationDescription")?;
        let Some(services) = description.child("Services") else {
            return Ok(Vec::new());
        };
        Ok(services
            .children_named("Service")
            .map(|service| Service {
                model: service
                    .attribute("ServiceName")
                    .unwrap_or_default()
                    .to_owned(),
                alias: service.attribute("Alias").unwrap_or_default().to_owned(),
                attributes: service
                    .child("Attributes")
                    .map(|attrs| {
                        attrs
                            .children_named("Attribute")
                            .map(|a| {
                                (
                                    a.attribute("Name").unwrap_or_default().to_owned(),
                                    a.attribute("Value").unwrap_or_default().to_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect())
    }
}

/// A service in a reservation: the lock is the alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Service {
    pub model: String,
    pub alias: String,
    pub attributes: Vec<(String, String)>,
}

impl Service {
    pub(super) fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = r#"xmlns="http://schemas.qualisystems.com/ResourceManagement/ApiCommandResult.xsd" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance""#;

    #[test]
    fn requests_match_the_captured_bytes() {
        assert_eq!(
            logon("admin", "p&ss<w>rd", "Global"),
            "<Logon><username>admin</username><password>p&amp;ss&lt;w&gt;rd</password><domainName>Global</domainName></Logon>"
        );
        assert_eq!(
            add_service(
                "077e6b4f-5e70-46b5-aa4b-43e6f039acc3",
                "Mutex Service",
                "MUTEX",
                &[]
            ),
            "<AddServiceToReservation><reservationId>077e6b4f-5e70-46b5-aa4b-43e6f039acc3</reservationId><serviceName>Mutex Service</serviceName><alias>MUTEX</alias><attributes /></AddServiceToReservation>"
        );
        assert_eq!(
            add_service(
                "r",
                "Mutex Service",
                "MUTEX",
                &[("Mutex Owner".into(), "host1:1234".into())]
            ),
            "<AddServiceToReservation><reservationId>r</reservationId><serviceName>Mutex Service</serviceName><alias>MUTEX</alias><attributes><AttributeNameValue><Name>Mutex Owner</Name><Value>host1:1234</Value></AttributeNameValue></attributes></AddServiceToReservation>"
        );
        assert_eq!(
            remove_services("r", &["MUTEX", "OTHER"]),
            "<RemoveServicesFromReservation><reservationId>r</reservationId><services><string>MUTEX</string><string>OTHER</string></services></RemoveServicesFromReservation>"
        );
        assert_eq!(
            reservation_details("r"),
            "<GetReservationDetails><reservationId>r</reservationId><disableCache>true</disableCache></GetReservationDetails>"
        );
        assert_eq!(
            secure_logon("xoV3libZzEG/ii7ZQqAuqw==", "Global"),
            "<SecureLogon><token>xoV3libZzEG/ii7ZQqAuqw==</token><domainName>Global</domainName></SecureLogon>"
        );
    }

    #[test]
    fn control_characters_are_detected() {
        assert!(has_forbidden_chars("a\u{1}b"));
        assert!(!has_forbidden_chars("tab\tnewline\ncr\r"));
    }

    #[test]
    fn logon_reply() {
        let reply = format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<Response CommandName="Logon" Success="true" {NS}>
  <ErrorCode>0</ErrorCode>
  <ResponseInfo xsi:type="LogonResponseInfo">
    <Domain Name="Global" Description="A domain that includes all available resources" DomainId="dbaf480c-09f7-46d3-a2e2-e35d3e374a16" />
    <User Name="admin" IsAdmin="true" IsActive="true" DomainName="Global" IsDomainAdmin="false" />
    <Token Token="Yzhumq0qVkyIwyMkxzk7wQ==" />
  </ResponseInfo>
</Response>"#
        );
        let envelope = Envelope::parse(&reply).unwrap();
        assert!(envelope.success);
        assert_eq!(envelope.error_code, "0");
        assert_eq!(
            envelope.logon_token().as_deref(),
            Some("Yzhumq0qVkyIwyMkxzk7wQ==")
        );
        // No space before "/>", as in a Quali unit test.
        let terse = format!(
            r#"<Response CommandName="Logon" Success="True" {NS}><ErrorCode>0</ErrorCode><ResponseInfo><Token Token="V4h6L7+R6EqOtZJRojp0Gg=="/></ResponseInfo></Response>"#
        );
        assert_eq!(
            Envelope::parse(&terse).unwrap().logon_token().as_deref(),
            Some("V4h6L7+R6EqOtZJRojp0Gg==")
        );
    }

    #[test]
    fn error_reply() {
        let reply = format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<Response CommandName="AddServiceToReservation" Success="false" {NS}>
  <Error>Service with given alias already exists</Error>
  <ErrorCode>100</ErrorCode>
</Response>"#
        );
        let envelope = Envelope::parse(&reply).unwrap();
        assert!(!envelope.success);
        assert_eq!(envelope.error_code, "100");
        assert_eq!(envelope.error, "Service with given alias already exists");
    }

    #[test]
    fn prefixed_names_and_entities() {
        let reply = r#"<a:Response xmlns:a="urn:x" Success="false"><a:Error>Bad &lt;thing&gt; &amp; &#x41;&#66;</a:Error><a:ErrorCode>7</a:ErrorCode></a:Response>"#;
        let envelope = Envelope::parse(reply).unwrap();
        assert_eq!(envelope.error, "Bad <thing> & AB");
        assert_eq!(envelope.error_code, "7");
    }

    #[test]
    fn reservation_details_reply() {
        let reply = format!(
            r#"<?xml version="1.0" encoding="utf-8"?>
<Response CommandName="GetReservationDetails" Success="true" {NS}>
  <ErrorCode>0</ErrorCode>
  <ResponseInfo xsi:type="GetReservationDescriptionResponseInfo">
    <ReservationDescription Id="r1" Name="res" Description="bad&#x0;byte" Owner="admin" DomainName="Global">
    <Connectors />
    <Apps />
    <Services>
      <Service ServiceName="Mutex Service" Alias="MUTEX">
        <Attributes>
          <Attribute Name="Mutex Owner" Value="host1:1234" />
          <Attribute Name="Since" Value="2024-01-01T00:00:00Z" />
        </Attributes>
      </Service>
      <Service ServiceName="Mutex Service" Alias="build@2">
        <Attributes>
        </Attributes>
      </Service>
      <Service ServiceName="Other" Alias="x" />
    </Services>
    </ReservationDescription>
  </ResponseInfo>
</Response>"#
        );
        let envelope = Envelope::parse(&reply).unwrap();
        let services = envelope.services().unwrap();
        assert_eq!(services.len(), 3);
        assert_eq!(services[0].alias, "MUTEX");
        assert_eq!(services[0].attribute("Mutex Owner"), Some("host1:1234"));
        assert_eq!(services[1].alias, "build@2");
        assert!(services[1].attributes.is_empty());
        assert_eq!(services[2].model, "Other");
        let description = envelope.root.find("ReservationDescription").unwrap();
        assert_eq!(description.attribute("Description"), Some("bad<NUL>byte"));
    }

    #[test]
    fn empty_services() {
        let reply = format!(
            r#"<Response Success="true" {NS}><ErrorCode>0</ErrorCode><ResponseInfo><ReservationDescription Id="r"><Services /></ReservationDescription></ResponseInfo></Response>"#
        );
        assert!(
            Envelope::parse(&reply)
                .unwrap()
                .services()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            "",
            "Internal Server Error",
            "<Response Success=\"true\">",
            "<html><body>proxy error</body></html>",
            "<Response><ErrorCode>0</ErrorCode></Response>",
            "<Response Success=\"true\"></Wrong>",
        ] {
            assert!(Envelope::parse(bad).is_err(), "{bad:?}");
        }
    }
}
