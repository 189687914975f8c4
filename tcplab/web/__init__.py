"""
The web front door: chat and files from a browser, served by C{twisted.web}.

One module per concern: L{tcplab.web.security} (response headers, sessions,
the Origin and token checks), L{tcplab.web.site} (the HTTP channel, request
and site every page shares, with the same limits as the other listeners),
L{tcplab.web.chat} (a WebSocket member of the chat hub),
L{tcplab.web.files} and L{tcplab.web.uploads} (browsing, downloads, deletes
and streamed, resumable uploads through the file service's own storage),
L{tcplab.web.qr} (the start-up URL and QR code) and L{tcplab.web.tap} (the
C{--web} option of the chat and files plugins).  The pages themselves are
static files in C{tcplab/web/static/}: no build step, no outside request.
"""
