"""The seed walkthrough (`shiftroute demo`) and its test application (`shiftroute demo-app`)."""
