package process

// DerivedID is derivedID, for the tests that write journals by hand.
var DerivedID = derivedID
