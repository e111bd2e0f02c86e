//! What a failed request to the cluster says, in a person's words: a server that refuses the
//! kubeconfig's credentials, and one that does not answer, are said plainly; anything else as
//! the API said it.

use std::fmt;

/// A failed request, to show.
pub struct Said<'e>(pub &'e kube::Error);

impl fmt::Display for Said<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            kube::Error::Api(status) if status.code == 401 => f.write_str(
                "the cluster refuses the kubeconfig's credentials (401 Unauthorized): its token \
                 or client certificate is wrong or has expired",
            ),
            kube::Error::Api(status) if status.code == 403 => write!(
                f,
                "the cluster forbids it to the kubeconfig's user (403 Forbidden): {}",
                status.message
            ),
            e if does_not_answer(e) => write!(f, "the cluster does not answer ({e})"),
            e => e.fmt(f),
        }
    }
}

/// Whether `e` is a server that could not be reached (no answer, refused, timed out), rather
/// than one that answered.
pub fn does_not_answer(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Service(_) | kube::Error::HyperError(_))
}
