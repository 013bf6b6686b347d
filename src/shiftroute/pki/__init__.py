"""Certificates: make CAs and leaves (`shiftroute pki`), read and check PEM (admission, diagnose)."""
