/**
 * Card BIN (issuer identification number) → issuing country, for the card-country vs IP-country
 * feature. A small static table, longest prefix wins; a real deployment loads its BIN vendor's
 * file here. Only the country is ever kept (payment_methods.bin_country), never the BIN itself:
 * six to eight digits of a card number are still card data.
 *
 * The ranges are the public test cards of the card networks' sandboxes: 4242…/5555… (US), and
 * the country test cards 400000<ISO 3166-1 numeric><…>, e.g. 4000008260000000 is a GB card.
 */

/** prefix → ISO 3166-1 alpha-2. Longest matching prefix wins. */
const BIN_COUNTRIES: ReadonlyArray<readonly [prefix: string, country: string]> = [
  ['424242', 'US'], // Visa test card
  ['555555', 'US'], // Mastercard test card
  ['400000', 'US'], // Visa sandbox behaviour cards (declined, insufficient funds, timeout)
  ['400000076', 'BR'],
  ['400000124', 'CA'],
  ['400000250', 'FR'],
  ['400000276', 'DE'],
  ['400000392', 'JP'],
  ['400000484', 'MX'],
  ['400000826', 'GB'],
];

// Sorted longest first once, so the first hit is the longest prefix.
const BY_LENGTH = [...BIN_COUNTRIES].sort((a, b) => b[0].length - a[0].length);

/** The issuing country of a card number (digits only), or null when the BIN is not in the table. */
export function binCountryOf(cardNumber: string): string | null {
  for (const [prefix, country] of BY_LENGTH) if (cardNumber.startsWith(prefix)) return country;
  return null;
}
