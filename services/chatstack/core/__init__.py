"""The service runtime shared by every chatstack service."""
