//! Outgoing mail. The default writes each message to the server log (SPEC §4); a deployment
//! with an SMTP relay plugs in another implementation.

/// One outgoing message.
#[derive(Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

impl std::fmt::Debug for Mail {
    // The body carries single-use secrets (reset tokens): keep it out of debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish()
    }
}

pub trait Mailer: Send + Sync + 'static {
    fn send(&self, mail: Mail);
}

/// Writes mail to the log, the SPEC's default delivery.
pub struct LogMailer;

impl Mailer for LogMailer {
    fn send(&self, mail: Mail) {
        tracing::info!(target: "mailer", to = %mail.to, subject = %mail.subject, body = %mail.body, "mail");
    }
}
