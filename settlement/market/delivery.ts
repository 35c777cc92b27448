import { move, ownerAccount, systemAccount, type Transfer } from './accounts.ts';
import { valueOf } from './money.ts';
import type { Currency, Minor, PricePerKwh, TradeId } from './types.ts';

/**
 * Delivery settlement, free of storage: once a delivery interval's readings are final, each
 * trade is settled against what the parties' meters measured in that interval.
 *
 * Metered energy is shared out over a party's trades of the interval in trade order: a seller's
 * export (all of its generation and bidirectional meters in the market) covers its sales one
 * after the other, a buyer's import covers its purchases likewise. For each trade:
 *
 * - delivered = min(energy, the seller's export left for it). The seller is paid
 *   price × delivered (rounded down) from escrow; the rest of the trade's value goes back to the
 *   buyer (delivery_refund): nobody pays for energy that was not delivered.
 * - seller short = energy − delivered. The grid covered it, at the imbalance price. When that is
 *   above the trade price the seller also pays short × (imbalance − price) to the imbalance
 *   account, at most what this trade pays it (so a balance never goes negative).
 * - buyer surplus = delivered − min(delivered, the buyer's import left for it): energy the buyer
 *   paid for and did not take, which flowed to the grid. The imbalance account buys it back at
 *   min(price, imbalance), so deviating never pays.
 *
 * The imbalance price is the indicative price of the delivery interval itself (pricing.ts over
 * the interval's metered supply and demand): what the energy was worth when it flowed.
 */
export interface TradeToSettle {
  id: TradeId;
  buyer: string;
  seller: string;
  energyWh: number;
  price: PricePerKwh;
  value: Minor;
}

export interface DeliveryResult {
  id: TradeId;
  /** The party's metered energy this trade was settled against (its share, see above). */
  sellerMeteredWh: number;
  buyerMeteredWh: number;
  sellerShortWh: number;
  buyerShortWh: number;
  sellerPaid: Minor;
  buyerRefund: Minor;
  sellerPenalty: Minor;
  buyerBuyback: Minor;
  transfers: Transfer[];
}

/**
 * `exportWh` / `importWh`: each account's metered export / import in the interval. Trades are
 * settled in the order given (the store gives them in trade id order, which is auction order).
 */
export function settleDeliveries(
  trades: readonly TradeToSettle[],
  metered: { exportWh: ReadonlyMap<string, number>; importWh: ReadonlyMap<string, number> },
  imbalancePrice: PricePerKwh,
  currency: Currency,
): DeliveryResult[] {
  const exportLeft = new Map(metered.exportWh);
  const importLeft = new Map(metered.importWh);
  const escrow = systemAccount('escrow', currency);
  const imbalance = systemAccount('imbalance', currency);
  return trades.map((t) => {
    const ref = { kind: 'delivery' as const, id: t.id };
    const delivered = Math.min(t.energyWh, exportLeft.get(t.seller) ?? 0);
    exportLeft.set(t.seller, (exportLeft.get(t.seller) ?? 0) - delivered);
    const taken = Math.min(delivered, importLeft.get(t.buyer) ?? 0);
    importLeft.set(t.buyer, (importLeft.get(t.buyer) ?? 0) - taken);

    const sellerPaid = valueOf(t.price, delivered, 'down');
    const buyerRefund = t.value - sellerPaid;
    const sellerShortWh = t.energyWh - delivered;
    const surplusWh = delivered - taken;
    const penaltyRate = imbalancePrice > t.price ? imbalancePrice - t.price : 0n;
    const penalty = valueOf(penaltyRate, sellerShortWh, 'up');
    const sellerPenalty = penalty < sellerPaid ? penalty : sellerPaid;
    const buybackPrice = imbalancePrice < t.price ? imbalancePrice : t.price;
    const buyerBuyback = valueOf(buybackPrice, surplusWh, 'down');

    const transfers: Transfer[] = [];
    if (sellerPaid > 0n) transfers.push(move('delivery_payment', ref, escrow, ownerAccount(t.seller, currency), currency, sellerPaid));
    if (buyerRefund > 0n) transfers.push(move('delivery_refund', ref, escrow, ownerAccount(t.buyer, currency), currency, buyerRefund));
    if (sellerPenalty > 0n) transfers.push(move('imbalance', ref, ownerAccount(t.seller, currency), imbalance, currency, sellerPenalty, 'seller short'));
    if (buyerBuyback > 0n) transfers.push(move('imbalance', ref, imbalance, ownerAccount(t.buyer, currency), currency, buyerBuyback, 'buyer surplus'));
    return {
      id: t.id,
      sellerMeteredWh: delivered,
      buyerMeteredWh: taken,
      sellerShortWh,
      buyerShortWh: t.energyWh - taken,
      sellerPaid,
      buyerRefund,
      sellerPenalty,
      buyerBuyback,
      transfers,
    };
  });
}
