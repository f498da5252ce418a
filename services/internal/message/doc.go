// Package message defines what a contact message is and the rules a
// submission must follow before it is stored: the seed's two fields,
// assunto (subject) and mensagem (body), with their limits.
package message
