"""Sarah, the reference voice agent of caller memory."""
